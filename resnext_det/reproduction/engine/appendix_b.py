"""The paper's two-step detection recipe (Appendix B), as resumable stages.

1. ``rpn``: train the RPN alone (``ProposalNetwork``) from the ImageNet weights.
2. ``proposals``: run it on every image of every training and test split; one file per
   split in Detectron2's proposal format; the RPN's recall (AR@100, AR@1000) on the test
   splits.
3. ``fast_rcnn``: train Fast R-CNN on those proposals, again from the ImageNet weights
   (the two steps share no features).
4. ``evaluate``: COCO AP of the Fast R-CNN model on the test splits, beside Table 8.

Each stage writes under its own folder of the output directory: when it starts, a
``stage_record.json`` with the config it runs with (every key, flattened), the data it
reads (a digest of each dataset, :func:`~resnext_det.reproduction.data.dataset_digest`: the same
dataset names may stand for other data under another datasets root) and the run of each
stage whose outputs it reads; once its outputs are complete, a ``stage_done.json``
holding that record, its outputs and an id of this run. A later run skips a finished
stage and resumes an unfinished one from its last checkpoint, but only when its record
matches what the stage would run with now: the same config (bar the keys in
``UNRECORDED_KEYS``, which change no result), the same data and the same runs of the
stages before it (new proposals make the Fast R-CNN step stale). A stage that does not
match is refused in one line naming the keys or datasets that differ, before any stage
starts; with
``rerun_changed_stages`` it is run again from scratch, its old folder kept beside it as
``<stage>.stale-<n>``. Every function here runs in every process of a launch.
"""

import json
import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog
from detectron2.evaluation import DatasetEvaluator, inference_on_dataset
from detectron2.utils import comm

from ...checkpoint import SafeDetectionCheckpointer
from ...modeling import ResNeXtSpec
from ...utils.atomic_io import write_text_atomically
from ...utils.errors import ConfigError
from ..analysis.paper import PAPER_TABLE_8
from ..data import dataset_digest, missing_image_ids, write_proposal_file
from .coco_evaluation import COCOEvaluator
from .trainer import Trainer, build_config
from .validate import check_detection_run

__all__ = ["AppendixB", "ProposalWriter", "results_table"]

logger = logging.getLogger(__name__)

STAGES = ("rpn", "proposals", "fast_rcnn", "evaluate")
# The stages whose outputs each stage reads.
STAGE_INPUTS = {
    "rpn": (),
    "proposals": ("rpn",),
    "fast_rcnn": ("proposals",),
    "evaluate": ("fast_rcnn", "proposals"),
}
# Keys that change where a stage writes or how fast it runs, not what it computes; a stage
# moved to another folder, machine or device stays reusable.
UNRECORDED_KEYS = frozenset(
    {
        "OUTPUT_DIR",
        "MODEL.DEVICE",
        "DATALOADER.NUM_WORKERS",
        "SOLVER.CHECKPOINT_PERIOD",
        "DATASETS.PROPOSAL_FILES_TRAIN",  # derived from the output directory
        "DATASETS.PROPOSAL_FILES_TEST",
        "CUDNN_BENCHMARK",
        "VIS_PERIOD",
    }
)
_DONE = "stage_done.json"
_RECORD = "stage_record.json"


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
        rerun_changed_stages: run a stage whose record does not match its config (or the
            runs of the stages before it) again, instead of refusing it; its old folder is
            kept as ``<stage>.stale-<n>``.
    """

    rpn_config_file: str
    fast_rcnn_config_file: str
    opts: Sequence[str] = ()
    output_dir: Optional[str] = None
    rerun_changed_stages: bool = False

    def __post_init__(self) -> None:
        self._digests: dict[str, str] = {}  # dataset name -> digest, read once per run
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
            marker = {**outputs, "record": self.stage_record(stage), "run_id": uuid.uuid4().hex}
            text = json.dumps(marker, indent=2, sort_keys=True)
            self.stage_dir(stage).mkdir(parents=True, exist_ok=True)
            write_text_atomically(self.stage_dir(stage) / _DONE, text)
        comm.synchronize()

    # -- what each stage was made with ---------------------------------------------------

    def stage_config(self, stage: str) -> dict[str, Any]:
        """The config ``stage`` runs with, flattened to ``{"SOLVER.BASE_LR": 0.02, ...}``
        in json values, without the keys that change no result."""
        if stage in ("rpn", "proposals"):
            cfg = self.rpn_stage_cfg()
        elif stage == "fast_rcnn":
            cfg = self._without_tests(self.fast_rcnn_stage_cfg())
        else:
            cfg = self.fast_rcnn_stage_cfg("evaluate")
        flat = {k: v for k, v in _flatten(cfg).items() if k not in UNRECORDED_KEYS}
        if stage == "proposals":  # which splits it makes proposals for
            flat["splits"] = list(dict.fromkeys(self.train_splits + self.test_splits))
        return json.loads(json.dumps(flat))

    def _run_id(self, stage: str) -> Optional[str]:
        marker = self._read_marker(self.stage_dir(stage) / _DONE)
        return marker.get("run_id") if marker else None

    def stage_splits(self, stage: str) -> tuple[str, ...]:
        """The datasets whose data ``stage`` reads."""
        if stage == "rpn":
            return tuple(self.rpn_cfg.DATASETS.TRAIN)
        if stage == "proposals":
            return tuple(dict.fromkeys(self.train_splits + self.test_splits))
        return self.train_splits if stage == "fast_rcnn" else self.test_splits

    def stage_data(self, stage: str) -> dict[str, str]:
        """The digest of each dataset ``stage`` reads (:func:`dataset_digest`)."""
        for split in self.stage_splits(stage):
            if split not in self._digests:
                self._digests[split] = dataset_digest(split)
        return {split: self._digests[split] for split in self.stage_splits(stage)}

    def stage_record(self, stage: str) -> dict[str, Any]:
        """What ``stage`` is made from: its config, its data and the run of each stage it
        reads."""
        return {
            "config": self.stage_config(stage),
            "data": self.stage_data(stage),
            "inputs": {up: self._run_id(up) for up in STAGE_INPUTS[stage]},
        }

    @staticmethod
    def _read_marker(path: Path) -> Optional[dict]:
        if not path.is_file():
            return None
        try:
            marker = json.loads(path.read_text())
        except ValueError:  # written atomically, so only by hand
            return {}
        return marker if isinstance(marker, dict) else {}

    def _stale_reason(self, stage: str, running: Sequence[str]) -> Optional[str]:
        """Why the folder of ``stage`` does not hold what it would make now; None if it
        does, or if it holds nothing yet. ``running``: the stages before it that will run."""
        done = self._read_marker(self.stage_dir(stage) / _DONE)
        marker = done if done is not None else self._read_marker(self.stage_dir(stage) / _RECORD)
        if marker is None:  # nothing yet; or what an earlier version left, unrecorded
            folder = self.stage_dir(stage)
            return "it records no config" if folder.is_dir() and any(folder.iterdir()) else None
        record = marker.get("record") if done is not None else marker
        if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
            return "it records no config (made by an earlier version, or edited)"
        reasons = _differences(record["config"], self.stage_config(stage))
        made_from = record.get("data")
        if not isinstance(made_from, dict):
            reasons.append("it records no digest of its data (made by an earlier version)")
        else:
            reasons += [
                f"the data of {split!r} differ from those it was made from"
                for split, digest in self.stage_data(stage).items()
                if made_from.get(split) != digest
            ]
        for up in STAGE_INPUTS[stage]:
            if up in running:
                reasons.append(f"stage {up!r}, whose outputs it reads, runs again")
            elif record.get("inputs", {}).get(up) != self._run_id(up):
                reasons.append(f"it was made from another run of stage {up!r}")
        return "; ".join(reasons) or None

    def plan(self, stages: Sequence[str] = STAGES, redo: Sequence[str] = ()) -> dict[str, str]:
        """What :meth:`run` will do with each stage it needs: ``"skip"`` (finished and
        current), ``"run"`` (new, or resumed: unfinished and current; or in ``redo``) or
        ``"rerun"`` (changed: set aside, then run from scratch).

        Raises:
            ConfigError: a stage's folder holds what another config (or another run of an
                earlier stage) made, and ``rerun_changed_stages`` is off; or a stage needs
                one that is neither finished nor to be run.
        """
        unknown = [s for s in (*stages, *redo) if s not in STAGES]
        if unknown:
            raise ConfigError(f"unknown stage(s) {unknown}; expected some of {list(STAGES)}")
        needed = set(stages)
        for stage in reversed(STAGES):
            if stage in needed:
                needed.update(STAGE_INPUTS[stage])
        actions: dict[str, str] = {}
        for stage in (s for s in STAGES if s in needed):
            running = [s for s, action in actions.items() if action != "skip"]
            reason = self._stale_reason(stage, running)
            if stage not in stages:  # only read: must be finished, and current
                if not self.is_done(stage):
                    raise ConfigError(
                        f"stage {stage!r} is not finished in {self.stage_dir(stage)}, and "
                        f"{[s for s in stages if stage in STAGE_INPUTS[s]]} read its outputs; "
                        "expected the whole recipe run first (without --eval-only)"
                    )
                if reason:
                    raise ConfigError(self._stale_message(stage, reason, only_read=True))
                actions[stage] = "skip"
            elif stage in redo:
                actions[stage] = "run"
            elif reason is None:
                actions[stage] = "skip" if self.is_done(stage) else "run"
            elif self.rerun_changed_stages:
                actions[stage] = "rerun"
            else:
                raise ConfigError(self._stale_message(stage, reason))
        return actions

    def _stale_message(self, stage: str, reason: str, only_read: bool = False) -> str:
        state = "finished" if self.is_done(stage) else "unfinished"
        remedy = (
            "run the whole recipe with --rerun-changed-stages"
            if only_read
            else "pass --rerun-changed-stages to run it and the stages after it again"
        )
        return (
            f"stage {stage!r} in {self.stage_dir(stage)} ({state}) was made with another "
            f"config or input than this run's: {reason}; expected what it was made with: "
            f"restore that, or {remedy} (the old folder is then kept as "
            f"{self._aside(stage).name})"
        )

    def _aside(self, stage: str) -> Path:
        """The first free ``<stage>.stale-<n>`` folder name."""
        n = 1
        while (self.root / f"{stage}.stale-{n}").exists():
            n += 1
        return self.root / f"{stage}.stale-{n}"

    def _set_aside(self, stage: str) -> None:
        if comm.is_main_process() and self.stage_dir(stage).exists():
            aside = self._aside(stage)
            os.replace(self.stage_dir(stage), aside)
            logger.warning(f"Appendix B stage {stage!r}: changed; old outputs kept in {aside}")
        comm.synchronize()

    def _start(self, stage: str) -> None:
        """Record what the stage runs with before it writes anything else."""
        if comm.is_main_process():
            self.stage_dir(stage).mkdir(parents=True, exist_ok=True)
            text = json.dumps(self.stage_record(stage), indent=2, sort_keys=True)
            write_text_atomically(self.stage_dir(stage) / _RECORD, text)
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

    def check(
        self, world_size: int = 1, stages: Sequence[str] = STAGES, redo: Sequence[str] = ()
    ) -> None:
        """Check both steps before the first starts (:func:`check_detection_run`), and that
        every stage folder to be reused holds what this run would make (:meth:`plan`); the
        proposal files the second step reads are checked when the first has written them."""
        self.plan(stages, redo)  # first: it reads only the stage markers
        check_detection_run(self.rpn_stage_cfg(), resume=True, world_size=world_size)
        check_detection_run(
            self.fast_rcnn_stage_cfg(), resume=True, world_size=world_size, check_proposals=False
        )

    # -- stages --------------------------------------------------------------------------

    def run(self, stages: Sequence[str] = STAGES, redo: Sequence[str] = ()) -> dict:
        """Run the given stages in order and return the evaluation.

        Finished stages whose record matches are skipped, except those named in ``redo``;
        a stage whose record does not match is refused or run again (:meth:`plan`).
        """
        actions = self.plan(stages, redo)
        comm.synchronize()  # every process has read the markers before any is moved
        for stage in (s for s in STAGES if s in stages):
            if actions[stage] == "skip":
                logger.info(f"Appendix B stage {stage!r}: complete, skipped")
                continue
            if actions[stage] == "rerun":
                self._set_aside(stage)
            logger.info(f"Appendix B stage {stage!r}: running in {self.stage_dir(stage)}")
            self._start(stage)
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


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"SOLVER.BASE_LR": 0.02, ...}`` for every leaf of a config node."""
    flat = {}
    for key, value in node.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _differences(then: dict[str, Any], now: dict[str, Any], shown: int = 4) -> list[str]:
    """``"SOLVER.MAX_ITER was 2, now 4"`` for each key that differs, the first ``shown``."""
    keys = sorted(k for k in then.keys() | now.keys() if then.get(k, _UNSET) != now.get(k, _UNSET))
    parts = [
        f"{k} was {_shown(then.get(k, _UNSET))}, now {_shown(now.get(k, _UNSET))}"
        for k in keys[:shown]
    ]
    if len(keys) > shown:
        parts.append(f"and {len(keys) - shown} more keys")
    return [", ".join(parts)] if parts else []


_UNSET = object()


def _shown(value: Any) -> str:
    if value is _UNSET:
        return "not set"
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
