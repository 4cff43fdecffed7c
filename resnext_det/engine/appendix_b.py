"""The paper's two-step detection recipe (Appendix B), as resumable stages.

1. ``rpn``: train the RPN alone (``ProposalNetwork``) from the ImageNet weights.
2. ``proposals``: run it on every image of every training and test split; one file per
   split in Detectron2's proposal format; the RPN's recall (AR@100, AR@1000) on the test
   splits.
3. ``fast_rcnn``: train Fast R-CNN on those proposals, again from the ImageNet weights
   (the two steps share no features).
4. ``evaluate``: COCO AP of the Fast R-CNN model on the test splits, beside Table 8.

Each stage writes under its own folder of the output directory and, once its outputs are
complete, a ``stage_done.json``; a later run skips such stages and resumes the others
from their last checkpoint. Every function here runs in every process of a launch.
"""

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog
from detectron2.evaluation import DatasetEvaluator, inference_on_dataset
from detectron2.utils import comm

from ..analysis.paper import PAPER_TABLE_8
from ..atomic_io import write_text_atomically
from ..checkpoint import SafeDetectionCheckpointer
from ..data import missing_image_ids, write_proposal_file
from ..errors import ConfigError
from ..modeling import ResNeXtSpec
from .coco_evaluation import COCOEvaluator
from .trainer import Trainer, build_config
from .validate import check_detection_run

__all__ = ["AppendixB", "ProposalWriter", "results_table"]

logger = logging.getLogger(__name__)

STAGES = ("rpn", "proposals", "fast_rcnn", "evaluate")
_DONE = "stage_done.json"


class ProposalWriter(DatasetEvaluator):
    """Collects a ``ProposalNetwork``'s boxes for every image and writes one proposal file.

    Each process sees its shard of the split; the main process gathers them and writes.
    """

    def __init__(self, path: os.PathLike):
        self._path = Path(path)
        self.reset()

    def reset(self) -> None:
        self._proposals: list[tuple[Any, Any, Any]] = []

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for sample, output in zip(inputs, outputs):
            proposals = output["proposals"].to("cpu")
            self._proposals.append(
                (
                    sample["image_id"],
                    proposals.proposal_boxes.tensor.numpy(),
                    proposals.objectness_logits.numpy(),
                )
            )

    def evaluate(self) -> dict:
        shards = comm.gather(self._proposals, dst=0)
        if comm.is_main_process():
            proposals = [p for shard in shards for p in shard]
            ids, boxes, logits = zip(*proposals) if proposals else ((), (), ())
            write_proposal_file(self._path, ids, boxes, logits)
        comm.synchronize()
        return {}


def results_table(cfg: CfgNode, results: dict, recall: dict) -> str:
    """Markdown: our AP and AP@0.5 per test split beside the paper's Table 8 row."""
    spec = ResNeXtSpec.from_config(cfg)
    key = (spec.depth, spec.cardinality, spec.bottleneck_width)
    model, paper_ap50, paper_ap = PAPER_TABLE_8.get(
        key, (f"depth {key[0]}, {key[1]}x{key[2]}d", None, None)
    )
    rows = [
        "| model | split | AP@0.5 | AP | paper AP@0.5 | paper AP | RPN AR@100 | RPN AR@1000 |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def fmt(value: Optional[float]) -> str:
        return "-" if value is None else f"{value:.1f}"

    for split, metrics in results.items():
        bbox = metrics["bbox"]
        ar = recall.get(split, {})
        rows.append(
            f"| {model} | {split} | {fmt(bbox['AP50'])} | {fmt(bbox['AP'])} | "
            f"{fmt(paper_ap50)} | {fmt(paper_ap)} | {fmt(ar.get('AR@100'))} | "
            f"{fmt(ar.get('AR@1000'))} |"
        )
    note = (
        "Paper: Table 8 (COCO minival, C4, two-step training)."
        if paper_ap is not None
        else "The paper's Table 8 has no row for this model."
    )
    text = "\n".join(rows) + "\n\n" + note + "\n"
    for split, metrics in results.items():
        bbox = metrics["bbox"]
        rows = [f"| category ({split}) | AP | APs | APm | APl |", "|---|---|---|---|---|"]
        # Detectron2 lists per-category AP only when there is more than one category.
        rows += [f"| {k[3:]} | {fmt(v)} | | | |" for k, v in bbox.items() if k.startswith("AP-")]
        rows.append(
            f"| all | {fmt(bbox['AP'])} | {fmt(bbox['APs'])} | {fmt(bbox['APm'])} | "
            f"{fmt(bbox['APl'])} |"
        )
        text += "\n" + "\n".join(rows) + "\n"
    return text


@dataclass
class AppendixB:
    """The two-step recipe over an RPN-step and a Fast R-CNN-step config.

    Args:
        rpn_config_file: config of step 1 (``META_ARCHITECTURE: ProposalNetwork``).
        fast_rcnn_config_file: config of step 2 (``LOAD_PROPOSALS: True``); its
            ``DATASETS.TRAIN`` and ``TEST`` are the splits proposals are made for.
        opts: ``KEY VALUE`` overrides applied to both steps (e.g. ``MODEL.WEIGHTS``).
        output_dir: root of the stage folders (default: the Fast R-CNN config's
            ``OUTPUT_DIR``).
    """

    rpn_config_file: str
    fast_rcnn_config_file: str
    opts: Sequence[str] = ()
    output_dir: Optional[str] = None

    def __post_init__(self) -> None:
        self.rpn_cfg = build_config(self.rpn_config_file, self.opts)
        self.fast_rcnn_cfg = build_config(self.fast_rcnn_config_file, self.opts)
        self._check_configs()
        self.root = Path(self.output_dir or self.fast_rcnn_cfg.OUTPUT_DIR)
        self.train_splits = tuple(self.fast_rcnn_cfg.DATASETS.TRAIN)
        self.test_splits = tuple(self.fast_rcnn_cfg.DATASETS.TEST)

    def _check_configs(self) -> None:
        arch = self.rpn_cfg.MODEL.META_ARCHITECTURE
        if arch != "ProposalNetwork":
            raise ConfigError(
                f"{self.rpn_config_file}: MODEL.META_ARCHITECTURE={arch!r}; expected "
                "'ProposalNetwork' for the RPN step"
            )
        cfg = self.fast_rcnn_cfg
        if not cfg.MODEL.LOAD_PROPOSALS or cfg.MODEL.PROPOSAL_GENERATOR.NAME != (
            "PrecomputedProposals"
        ):
            raise ConfigError(
                f"{self.fast_rcnn_config_file}: MODEL.LOAD_PROPOSALS="
                f"{cfg.MODEL.LOAD_PROPOSALS} and MODEL.PROPOSAL_GENERATOR.NAME="
                f"{cfg.MODEL.PROPOSAL_GENERATOR.NAME!r}; expected True and "
                "'PrecomputedProposals' for the Fast R-CNN step"
            )

    # -- paths ---------------------------------------------------------------------------

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def proposal_file(self, split: str) -> Path:
        return self.stage_dir("proposals") / f"{split}.pkl"

    def is_done(self, stage: str) -> bool:
        return (self.stage_dir(stage) / _DONE).is_file()

    def _mark_done(self, stage: str, outputs: dict) -> None:
        if comm.is_main_process():
            text = json.dumps(outputs, indent=2, sort_keys=True)
            self.stage_dir(stage).mkdir(parents=True, exist_ok=True)
            write_text_atomically(self.stage_dir(stage) / _DONE, text)
        comm.synchronize()

    def _stage_cfg(self, cfg: CfgNode, stage: str, **changes: Any) -> CfgNode:
        cfg = cfg.clone()
        cfg.OUTPUT_DIR = str(self.stage_dir(stage))
        for key, value in changes.items():
            node = cfg
            *parents, leaf = key.split(".")
            for parent in parents:
                node = node[parent]
            node[leaf] = value
        cfg.freeze()
        return cfg

    def rpn_stage_cfg(self) -> CfgNode:
        # No evaluation inside training: the proposals stage runs the RPN on every split.
        return self._stage_cfg(self.rpn_cfg, "rpn", **{"DATASETS.TEST": ()})

    def fast_rcnn_stage_cfg(self, stage: str = "fast_rcnn") -> CfgNode:
        return self._stage_cfg(
            self.fast_rcnn_cfg,
            stage,
            **{
                "DATASETS.PROPOSAL_FILES_TRAIN": tuple(
                    str(self.proposal_file(s)) for s in self.train_splits
                ),
                "DATASETS.PROPOSAL_FILES_TEST": tuple(
                    str(self.proposal_file(s)) for s in self.test_splits
                ),
            },
        )

    def check(self, world_size: int = 1) -> None:
        """Check both steps before the first starts (:func:`check_detection_run`); the
        proposal files the second reads are checked when the first has written them."""
        check_detection_run(self.rpn_stage_cfg(), resume=True, world_size=world_size)
        check_detection_run(
            self.fast_rcnn_stage_cfg(), resume=True, world_size=world_size, check_proposals=False
        )

    # -- stages --------------------------------------------------------------------------

    def run(self, stages: Sequence[str] = STAGES, redo: Sequence[str] = ()) -> dict:
        """Run the given stages in order and return the evaluation.

        Finished stages are skipped, except those named in ``redo``.
        """
        unknown = [s for s in (*stages, *redo) if s not in STAGES]
        if unknown:
            raise ConfigError(f"unknown stage(s) {unknown}; expected some of {list(STAGES)}")
        for stage in stages:
            if self.is_done(stage) and stage not in redo:
                logger.info(f"Appendix B stage {stage!r}: complete, skipped")
                continue
            logger.info(f"Appendix B stage {stage!r}: running in {self.stage_dir(stage)}")
            getattr(self, f"_run_{stage}")()
        done = self.stage_dir("evaluate") / _DONE
        return json.loads(done.read_text()) if done.is_file() else {}

    def _train(self, cfg: CfgNode) -> None:
        if comm.is_main_process():  # what this step ran with, as train_net keeps it
            Path(cfg.OUTPUT_DIR).mkdir(parents=True, exist_ok=True)
            write_text_atomically(Path(cfg.OUTPUT_DIR) / "config.yaml", cfg.dump())
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=True)  # picks up a killed run's last checkpoint
        trainer.train()

    def _run_rpn(self) -> None:
        cfg = self.rpn_stage_cfg()
        self._train(cfg)
        self._mark_done("rpn", {"model": str(Path(cfg.OUTPUT_DIR) / "model_final.pth")})

    def _run_proposals(self) -> None:
        cfg = self.rpn_stage_cfg()
        model = Trainer.build_model(cfg)
        weights = self.stage_dir("rpn") / "model_final.pth"
        SafeDetectionCheckpointer(model).load(str(weights))
        recall = {}
        for split in dict.fromkeys(self.train_splits + self.test_splits):
            path = self.proposal_file(split)
            image_ids = [r["image_id"] for r in DatasetCatalog.get(split)]
            wants_recall = split in self.test_splits
            if not missing_image_ids(path, image_ids) and not wants_recall:
                logger.info(f"Proposals for {split}: {path} is complete, skipped")
                continue
            evaluators = [ProposalWriter(path)]
            if wants_recall:
                evaluators.append(COCOEvaluator(split, output_dir=None))
            loader = Trainer.build_test_loader(cfg, split)
            results = inference_on_dataset(model, loader, evaluators)
            if wants_recall and comm.is_main_process():
                recall[split] = results["box_proposals"]
                logger.info(f"RPN recall on {split}: {recall[split]}")
            missing = missing_image_ids(path, image_ids)
            if missing:
                raise RuntimeError(f"{path} lacks {len(missing)} image ids of {split}")
        self._mark_done(
            "proposals",
            {
                "files": {
                    s: str(self.proposal_file(s)) for s in self.train_splits + self.test_splits
                },
                "recall": recall,
            },
        )

    def _run_fast_rcnn(self) -> None:
        cfg = self.fast_rcnn_stage_cfg()
        self._train(self._without_tests(cfg))
        self._mark_done("fast_rcnn", {"model": str(Path(cfg.OUTPUT_DIR) / "model_final.pth")})

    @staticmethod
    def _without_tests(cfg: CfgNode) -> CfgNode:
        # Evaluation is its own stage, so that it can be rerun without retraining.
        cfg = cfg.clone()
        cfg.defrost()
        cfg.DATASETS.TEST = ()
        cfg.DATASETS.PROPOSAL_FILES_TEST = ()
        cfg.freeze()
        return cfg

    def _run_evaluate(self) -> None:
        cfg = self.fast_rcnn_stage_cfg("evaluate")
        model = Trainer.build_model(cfg)
        weights = self.stage_dir("fast_rcnn") / "model_final.pth"
        SafeDetectionCheckpointer(model).load(str(weights))
        results = Trainer.test(cfg, model)
        outputs = {}
        if comm.is_main_process():  # the others hold no results
            if len(self.test_splits) == 1:  # Detectron2 unwraps a single split
                results = {self.test_splits[0]: results}
            recall_file = self.stage_dir("proposals") / _DONE
            recall = json.loads(recall_file.read_text())["recall"]
            table = results_table(cfg, results, recall)
            write_text_atomically(self.stage_dir("evaluate") / "results.md", table)
            logger.info(f"Appendix B results in {self.stage_dir('evaluate') / 'results.md'}")
            outputs = {"results": results, "recall": recall, "table": table}
        self._mark_done("evaluate", outputs)
