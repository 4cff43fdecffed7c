"""Train or evaluate a ResNeXt detector with Detectron2.

Detectron2's usual flags: --config-file, --resume, --eval-only, --num-gpus,
--num-machines, --machine-rank, --dist-url, and trailing KEY VALUE overrides; and
--coco-dataset NAME JSON IMAGE_DIR (repeatable) to train or test on your own COCO data.

    python tools/train_net.py --config-file configs/faster_rcnn_X50_32x4d.yaml --num-gpus 8
    python tools/train_net.py --config-file configs/demo/faster_rcnn_X14_32x4d_demo.yaml \
        SOLVER.MAX_ITER 100 OUTPUT_DIR output/try
    python tools/train_net.py --config-file configs/faster_rcnn_X50_32x4d_FPN.yaml \
        --coco-dataset my_train data/train.json data/images \
        --coco-dataset my_val data/val.json data/images \
        DATASETS.TRAIN '("my_train",)' DATASETS.TEST '("my_val",)' MODEL.ROI_HEADS.NUM_CLASSES 3

Before any process starts, the run is checked (device, schedule, datasets and their
images, proposal files, weights); a problem ends it with one line and exit code 2. The
launching process then holds OUTPUT_DIR for the run (a second run on the same folder ends
at once, naming the first one's pid), and a SIGTERM to it ends its worker processes too
(exit code 143); checkpoints are written whole, so --resume continues from the last.
"""

from detectron2.engine import default_setup
from detectron2.evaluation import verify_results
from detectron2.utils import comm

from resnext_det.checkpoint import SafeDetectionCheckpointer
from resnext_det.reproduction.data import register_coco_datasets
from resnext_det.reproduction.engine import Trainer, build_config, register_all
from resnext_det.reproduction.engine.validate import check_detection_run
from resnext_det.reproduction.training.launch import (
    detection_argument_parser,
    launch_holding_output_dir,
)
from resnext_det.utils.cli import run_tool, worker_errors


def main(args):
    # Runs in every process of a launch, so each registers for itself.
    register_all()
    register_coco_datasets(args.coco_dataset)
    cfg = build_config(args.config_file, args.opts)
    cfg.freeze()
    default_setup(cfg, args)

    if args.eval_only:
        model = Trainer.build_model(cfg)
        SafeDetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        results = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, results)
        return results

    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def worker(args):
    with worker_errors():
        return main(args)


def check_and_launch(args) -> None:
    register_all()
    register_coco_datasets(args.coco_dataset)
    cfg = build_config(args.config_file, args.opts)
    check_detection_run(
        cfg,
        eval_only=args.eval_only,
        resume=args.resume,
        world_size=max(args.num_gpus, 1) * args.num_machines,
    )
    launch_holding_output_dir(worker, args, cfg.OUTPUT_DIR, "OUTPUT_DIR", "train_net")


def cli() -> None:
    """The command line (``python tools/train_net.py``, ``resnext-train-net``)."""
    args = detection_argument_parser().parse_args()
    print("Command Line Args:", args)
    run_tool(lambda: check_and_launch(args))
