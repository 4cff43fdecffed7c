"""The bundled demo, end to end: prepare the tree-crown data, train, evaluate, draw."""

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from detectron2.engine import HookBase, default_setup
from detectron2.utils.logger import setup_logger

from ...model_zoo import get_config_file
from ...utils.paths import datasets_root
from ...utils.run_guard import exclusive_output_dir
from ..analysis.machine import cpu_isa
from ..data import prepare_demo_dataset
from ..data.sanitize import load_registered
from .predictor import predict_images
from .trainer import Trainer, build_config, register_all
from .validate import check_detection_run

__all__ = ["DEMO_CONFIG", "DemoResult", "TrainingTimeEstimate", "train_demo"]

DEMO_CONFIG = get_config_file("demo/faster_rcnn_X14_32x4d_demo.yaml")


@dataclass
class DemoResult:
    """What the demo reached: COCO AP and AP50 (0-100) on the val split, and its outputs."""

    ap: float
    ap50: float
    dataset: str
    output_dir: Path
    drawn_images: list[Path]
    seconds: float

    def summary(self) -> str:
        minutes, seconds = divmod(round(self.seconds), 60)
        return (
            f"demo: AP {self.ap:.1f}  AP50 {self.ap50:.1f} on {self.dataset} "
            f"after {minutes}m{seconds:02d}s; predictions drawn in {self.drawn_images[0].parent}"
        )


class TrainingTimeEstimate(HookBase):
    """Says, after the first steps, how long training will take on this machine.

    CPUs differ about 3x (AVX-512 or AVX2 only, clock, load): a time measured on one
    machine is no promise for another, so the demo measures its own.

    Args:
        skip: steps left out as warm-up (allocation, oneDNN's first-call setup, and the
            first steps of a randomly initialised detector, which are slower: timed from
            step 3, the demo's estimate was 20 min for 16 on a 2-core AVX-512 EPYC).
        measure: steps timed after them.
    """

    def __init__(self, skip: int = 10, measure: int = 20):
        self.skip, self.measure = skip, measure
        self._start: Optional[float] = None

    def after_step(self) -> None:
        done = self.trainer.iter + 1  # steps finished
        if done == self.skip:
            self._start = time.perf_counter()
        elif done == self.skip + self.measure and self._start is not None:
            per_step = (time.perf_counter() - self._start) / self.measure
            remaining = per_step * (self.trainer.max_iter - done)
            print(
                f"demo: {per_step:.2f} s per step on this machine ({cpu_isa()}); training "
                f"ends in about {remaining / 60:.0f} min, then evaluation and drawing",
                flush=True,
            )


def train_demo(
    config_file: str = DEMO_CONFIG,
    opts: Sequence[str] = (),
    root: Optional[str] = None,
    num_images: int = 4,
) -> DemoResult:
    """Prepare the demo data if missing, train the demo config, evaluate it, draw predictions.

    Args:
        config_file: the detector config (default: the demo's ResNeXt Faster R-CNN).
        opts: ``KEY VALUE`` overrides, as on train_net's command line.
        root: datasets root (default ``$DETECTRON2_DATASETS`` or ``./datasets``).
        num_images: how many val images to draw predictions on.

    Returns:
        A :class:`DemoResult`.
    """
    start = time.perf_counter()
    root = root or datasets_root()
    setup_logger(name="resnext_det")
    prepare_demo_dataset(root)
    register_all(root)
    cfg = build_config(config_file, opts)
    cfg.freeze()
    with exclusive_output_dir(cfg.OUTPUT_DIR):  # one run per folder (make demo twice)
        # Detectron2's own setup: logs, config dump in OUTPUT_DIR, seeding from cfg.SEED.
        default_setup(cfg, argparse.Namespace(config_file=config_file, opts=list(opts)))
        check_detection_run(cfg)

        trainer = Trainer(cfg)
        trainer.register_hooks([TrainingTimeEstimate()])
        trainer.resume_or_load(resume=False)
        results = trainer.train()
        dataset = cfg.DATASETS.TEST[0]
        bbox = results[dataset]["bbox"] if len(cfg.DATASETS.TEST) > 1 else results["bbox"]
        # Drawn by the predictor, from the written weights: as tools/demo.py would.
        predicted = cfg.clone()
        predicted.defrost()
        predicted.MODEL.WEIGHTS = str(Path(cfg.OUTPUT_DIR) / "model_final.pth")
        images = [record["file_name"] for record in load_registered(dataset)[:num_images]]
        folder = Path(cfg.OUTPUT_DIR) / "predictions"
        predictions = predict_images(predicted, images, folder, score_threshold=0.5)
        drawn = [folder / r["drawn"] for r in json.loads(predictions.path.read_text())]
    return DemoResult(
        ap=bbox["AP"],
        ap50=bbox["AP50"],
        dataset=dataset,
        output_dir=Path(cfg.OUTPUT_DIR),
        drawn_images=drawn,
        seconds=time.perf_counter() - start,
    )
