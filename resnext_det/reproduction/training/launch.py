"""Detectron2's launch, as the training tools run it: one run per output folder, and a
SIGTERM to the launcher ending its workers. Under torchrun, whose processes are the
workers, each joins torchrun's process group instead."""

import argparse
import os
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any, Optional

import torch
import torch.distributed as dist
from detectron2.engine import default_argument_parser, launch
from detectron2.utils import comm

from ...utils.errors import ConfigError
from ...utils.run_guard import (
    exclusive_output_dir,
    exclusive_output_dir_of_group,
    workers_end_with_launcher,
)

__all__ = ["detection_argument_parser", "launch_holding_output_dir", "run_in_torchrun_group"]


def detection_argument_parser(epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """Detectron2's ``default_argument_parser`` (``--config-file``, ``--resume``,
    ``--eval-only``, the launch flags, trailing overrides) and ``--coco-dataset``."""
    parser = default_argument_parser(epilog)
    parser.add_argument(
        "--coco-dataset",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "JSON", "IMAGE_DIR"),
        help="register a COCO-format dataset under NAME, for the config's datasets (repeatable)",
    )
    return parser


def launch_holding_output_dir(
    worker: Callable[..., Any],
    args: argparse.Namespace,
    output_dir: os.PathLike,
    what: str,
    tool: str,
) -> None:
    """Run ``worker(args)`` under Detectron2's ``launch`` with its usual flags.

    Only the first machine's launcher holds ``output_dir``: Detectron2's rule is that the
    main process of the first machine alone writes it, and on a shared file system the
    other machines would find it taken.

    Args:
        worker: the function each process runs, given ``args``.
        args: Detectron2's parsed arguments (``--num-gpus``, ``--num-machines``,
            ``--machine-rank``, ``--dist-url``).
        output_dir: the folder the run writes.
        what: how the user names that folder (``"OUTPUT_DIR"``), for the errors.
        tool: the tool's name, for the SIGTERM message.

    Under torchrun (``RANK`` and ``WORLD_SIZE`` in the environment), this process is one
    of torchrun's workers: see :func:`run_in_torchrun_group`.
    """
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        run_in_torchrun_group(worker, args, output_dir, what)
        return
    holder = exclusive_output_dir(output_dir, what) if args.machine_rank == 0 else nullcontext()
    with holder, workers_end_with_launcher(tool):
        launch(
            worker,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )


def run_in_torchrun_group(
    worker: Callable[..., Any], args: argparse.Namespace, output_dir: os.PathLike, what: str
) -> None:
    """Run ``worker(args)`` in this process, one of torchrun's, as Detectron2's launch would.

    The process joins torchrun's group (NCCL on its ``LOCAL_RANK`` GPU, else gloo) and
    Detectron2's per-machine group (``comm.get_local_rank()``), rank 0 holds
    ``output_dir`` for the group, and the group is left at the end, so that its threads end
    before the interpreter (after a barrier when the run ended well: a failed process
    leaves alone, and torchrun ends the others).

    Raises:
        ConfigError: ``--num-gpus`` or ``--num-machines`` other than 1 (torchrun's own
            flags say how many processes there are).
    """
    if args.num_gpus != 1 or args.num_machines != 1:
        raise ConfigError(
            f"--num-gpus {args.num_gpus} --num-machines {args.num_machines} under torchrun, "
            "which starts the processes itself; expected 1 for both, their defaults (torchrun's "
            "--nproc_per_node and --nnodes say how many)"
        )
    world_size = int(os.environ["WORLD_SIZE"])
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        comm.create_local_process_group(int(os.environ.get("LOCAL_WORLD_SIZE", world_size)))
    ended_well = False
    try:
        with exclusive_output_dir_of_group(output_dir, comm.is_main_process(), world_size, what):
            worker(args)
        ended_well = True
    finally:
        if dist.is_initialized():
            if ended_well:
                dist.barrier()
            dist.destroy_process_group()
