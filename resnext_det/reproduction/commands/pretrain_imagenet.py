"""Pretrain a ResNeXt classifier (ImageNet, Sec. 4; CIFAR, Appendix A), as train_net.py
trains a detector.

Detectron2's usual flags: --config-file, --resume, --eval-only, --num-gpus,
--num-machines, --machine-rank, --dist-url, and trailing KEY VALUE overrides.

    python tools/pretrain_imagenet.py --num-gpus 8 \\
        --config-file configs/imagenet/X50_32x4d.yaml DATA.ROOT datasets/imagenet
    python tools/pretrain_imagenet.py --num-gpus 8 --resume \\
        --config-file configs/imagenet/X50_32x4d.yaml DATA.ROOT datasets/imagenet
    python tools/pretrain_imagenet.py --eval-only --config-file configs/imagenet/X50_32x4d.yaml \\
        MODEL.WEIGHTS output/imagenet/X50_32x4d/model_final.pth
    python tools/pretrain_imagenet.py --config-file configs/cifar/resnext29_8x64d.yaml
    torchrun --nproc_per_node 8 tools/pretrain_imagenet.py \\
        --config-file configs/imagenet/X50_32x4d.yaml DATA.ROOT datasets/imagenet

One process per GPU (NCCL), or --num-gpus N processes on a CPU (gloo); torchrun works
too (its processes join its group). Batch and lr are given for 8 processes and scale
linearly to the number launched. Epoch-counted settings say so in their names
(SOLVER.EPOCHS, STEP_EPOCHS, WARMUP_EPOCHS, TEST.EVAL_PERIOD_EPOCHS). Then convert the
result for Detectron2 with tools/convert_weights.py.

Before any process starts, the run is checked (config, data root, the weights it starts
from); a problem ends it with one line and exit code 2, leaving no output folder. The
launching process then holds OUTPUT_DIR for the run (a second run on the same folder ends
at once, naming the first one's pid; rank 0 holds it under torchrun), and a SIGTERM to it
ends its worker processes too; checkpoints are written whole, so --resume continues from
the last.
"""

import json
import logging
import os

from detectron2.engine import default_argument_parser
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from resnext_det.reproduction.pretrain import Pretrainer, build_pretrain_config, check_pretrain_run
from resnext_det.reproduction.training.launch import launch_holding_output_dir
from resnext_det.utils.cli import run_tool, worker_errors


def main(args) -> dict:
    """One process of the launch: train (or evaluate) and print the last evaluation."""
    cfg = build_pretrain_config(args.config_file, args.opts)
    # Not Detectron2's default_setup: it saves a config of its own class only, and this
    # run's config.yaml is written (atomically) when training starts.
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="resnext_det")
    logging.getLogger("resnext_det").info(f"config {args.config_file}, overrides {args.opts}")
    trainer = Pretrainer(cfg)
    trainer.resume_or_load(resume=args.resume, whole_model=args.eval_only)
    results = trainer.evaluate() if args.eval_only else trainer.train()
    if comm.is_main_process():
        print(json.dumps(results), flush=True)
    return results


def worker(args) -> dict:
    with worker_errors():
        return main(args)


def check_and_launch(args) -> None:
    cfg = build_pretrain_config(args.config_file, args.opts)
    world_size = max(args.num_gpus, 1) * args.num_machines
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # torchrun's processes each check
        world_size = int(os.environ["WORLD_SIZE"])
    check_pretrain_run(cfg, world_size, eval_only=args.eval_only, resume=args.resume)
    launch_holding_output_dir(worker, args, cfg.OUTPUT_DIR, "OUTPUT_DIR", "pretrain_imagenet")


def cli() -> None:
    """The command line (``python tools/pretrain_imagenet.py``, ``resnext-pretrain-imagenet``)."""
    parser = default_argument_parser()
    parser.description, parser.epilog = __doc__, None
    args = parser.parse_args()
    if not args.config_file:
        parser.error("the following arguments are required: --config-file")
    run_tool(lambda: check_and_launch(args))
