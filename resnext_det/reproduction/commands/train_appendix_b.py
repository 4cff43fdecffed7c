"""The paper's two-step detection recipe (Appendix B) in one resumable command.

RPN step -> proposals for every training and test split -> Fast R-CNN step on those
proposals (from the ImageNet weights again: no shared features) -> COCO evaluation
beside Table 8. Each stage has its own folder under the output directory and is skipped
once complete, so rerunning the same command after a kill picks up where it stopped.

    python tools/train_appendix_b.py --num-gpus 8 \\
        --rpn-config-file configs/appendix_b/X50_32x4d_rpn.yaml \\
        --config-file configs/appendix_b/X50_32x4d_fast_rcnn.yaml

--config-file is the Fast R-CNN step (the detector you end up with); trailing KEY VALUE
overrides apply to both steps. Schedules scale linearly from 8 GPUs to --num-gpus
(SOLVER.REFERENCE_WORLD_SIZE). --eval-only runs only the evaluation stage again.

Each stage records the config it was made with (stage_done.json) and the runs of the
stages it reads. A stage is reused only for the same config (bar where it writes, the
device, the loader's workers and the checkpoint period) and the same earlier runs: after
a change (another SOLVER.MAX_ITER, lr, proposal count, ...) the command ends before any
stage starts, with one line naming the keys that differ.

--rerun-changed-stages  run such stages, and those after them, again from scratch; each
                        old folder is kept beside the new one as <stage>.stale-<n>.

The launching process holds the output directory for the run (a second run on it ends at
once, naming the first one's pid), and a SIGTERM to it ends its worker processes too.
"""

from detectron2.engine import default_argument_parser
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from resnext_det.reproduction.engine import register_all
from resnext_det.reproduction.engine.appendix_b import STAGES, AppendixB
from resnext_det.reproduction.training.launch import launch_holding_output_dir
from resnext_det.utils.cli import run_tool, worker_errors


def main(args):
    register_all()  # in every process of a launch
    setup_logger(distributed_rank=comm.get_rank())
    setup_logger(distributed_rank=comm.get_rank(), name="resnext_det")
    with worker_errors():
        results = _recipe(args).run(*_stages(args))
    if comm.is_main_process() and results:
        print(results["table"])
    return results


def _recipe(args) -> AppendixB:
    return AppendixB(
        args.rpn_config_file,
        args.config_file,
        args.opts,
        args.output_dir,
        rerun_changed_stages=args.rerun_changed_stages,
    )


def _stages(args) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The stages to run, and those to run even when finished."""
    return (("evaluate",), ("evaluate",)) if args.eval_only else (STAGES, ())


def check_and_launch(args) -> None:
    register_all()
    recipe = _recipe(args)
    recipe.check(max(args.num_gpus, 1) * args.num_machines, *_stages(args))
    what = "--output-dir" if args.output_dir else "OUTPUT_DIR"
    launch_holding_output_dir(main, args, recipe.root, what, "train_appendix_b")


def cli() -> None:
    """The command line (``python tools/train_appendix_b.py``, ``resnext-train-appendix-b``)."""
    parser = default_argument_parser(__doc__)
    parser.add_argument(
        "--rpn-config-file", required=True, metavar="FILE", help="config of the RPN step"
    )
    parser.add_argument(
        "--output-dir", default=None, help="root of the stage folders (default: OUTPUT_DIR)"
    )
    parser.add_argument(
        "--rerun-changed-stages",
        action="store_true",
        help="run a stage made with another config (and the stages after it) again, keeping "
        "its old folder as <stage>.stale-<n>, instead of refusing it",
    )
    args = parser.parse_args()
    if not args.config_file:
        parser.error("--config-file (the Fast R-CNN step) is required")
    run_tool(lambda: check_and_launch(args))
