#!/usr/bin/env python
"""Pretrain a ResNeXt classifier (ImageNet, Sec. 4; CIFAR, Appendix A) with torchrun and DDP.

    torchrun --nproc_per_node 8 tools/pretrain_imagenet.py \\
        --config-file configs/imagenet/X50_32x4d.yaml DATA.ROOT /data/imagenet
    torchrun --nproc_per_node 8 tools/pretrain_imagenet.py --resume \\
        --config-file configs/imagenet/X50_32x4d.yaml DATA.ROOT /data/imagenet
    python tools/pretrain_imagenet.py --eval-only --config-file configs/imagenet/X50_32x4d.yaml \\
        MODEL.WEIGHTS output/imagenet/X50_32x4d/model_final.pth
    python tools/pretrain_imagenet.py --config-file configs/cifar/resnext29_8x64d.yaml

One process per GPU (NCCL), or several on a CPU (gloo). Batch and lr are given for 8
processes and scale linearly to the number launched. Then convert the result for
Detectron2 with tools/convert_weights.py.

One run per OUTPUT_DIR: a second run on a folder in use ends at once, naming the first
one's pid. MODEL.WEIGHTS and the checkpoint to resume must fit the classifier and be
finite, or the run ends in one line naming the file.
"""

import argparse
import json
import logging

from resnext_det.utils.cli import set_tool_policy

set_tool_policy()  # first: Detectron2 warns about its own code when imported

# isort: split
from detectron2.utils.logger import setup_logger

from resnext_det.pretrain import (
    Pretrainer,
    build_pretrain_config,
    init_distributed,
    shutdown_distributed,
)
from resnext_det.utils.cli import run_tool
from resnext_det.utils.run_guard import exclusive_output_dir_of_group


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the last checkpoint in OUTPUT_DIR"
    )
    parser.add_argument("--eval-only", action="store_true", help="only evaluate MODEL.WEIGHTS")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args()

    cfg = build_pretrain_config(args.config_file, args.opts)
    context = init_distributed()
    ended_well = False
    try:
        # Built before the log file, so that a bad config or data root leaves no output folder.
        trainer = Pretrainer(cfg, context)
        # One run per OUTPUT_DIR, held by the main process (torchrun is the launcher here).
        with exclusive_output_dir_of_group(cfg.OUTPUT_DIR, context.is_main, context.world_size):
            setup_logger(cfg.OUTPUT_DIR, distributed_rank=context.rank, name="resnext_det")
            logger = logging.getLogger("resnext_det")
            logger.info(f"config {args.config_file}, overrides {args.opts}")
            trainer.resume_or_load(resume=args.resume, whole_model=args.eval_only)
            results = trainer.evaluate() if args.eval_only else trainer.train()
            del trainer  # DistributedDataParallel's reducer, before the group it talks to
        ended_well = True
    finally:
        shutdown_distributed(together=ended_well)
    if context.is_main:
        print(json.dumps(results))


if __name__ == "__main__":
    run_tool(main)
