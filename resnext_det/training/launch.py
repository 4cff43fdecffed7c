"""Detectron2's launch, as the training tools run it: one run per output folder, and a
SIGTERM to the launcher ending its workers."""

import argparse
import os
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from detectron2.engine import launch

from ..utils.run_guard import exclusive_output_dir, workers_end_with_launcher

__all__ = ["launch_holding_output_dir"]


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
    """
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
