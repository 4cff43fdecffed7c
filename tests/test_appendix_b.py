"""The Appendix-B two-step recipe: pinned config values, and the whole command on real data."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from detectron2.data import DatasetCatalog

from resnext_det.reproduction.data import load_proposal_file
from resnext_det.reproduction.engine import build_config, schedule_summary
from resnext_det.reproduction.engine.appendix_b import STAGES, AppendixB
from resnext_det.utils.errors import ConfigError

from ._paths import CONFIGS, REPO, TINY_DEMO_OPTS

APPENDIX_B = CONFIGS / "appendix_b"
DEMO_RPN = CONFIGS / "demo" / "appendix_b_rpn.yaml"
DEMO_FAST_RCNN = CONFIGS / "demo" / "appendix_b_fast_rcnn.yaml"
MODELS = {
    "R50": (50, 1, 64),
    "X50_32x4d": (50, 32, 4),
    "R101": (101, 1, 64),
    "X101_32x4d": (101, 32, 4),
}


@pytest.mark.parametrize("model", MODELS)
def test_appendix_b_values_are_pinned(model):
    for step in ("rpn", "fast_rcnn"):
        cfg = build_config(str(APPENDIX_B / f"{model}_{step}.yaml"))
        node = cfg.MODEL.RESNETS
        assert (node.DEPTH, node.NUM_GROUPS, node.WIDTH_PER_GROUP) == MODELS[model]
        # C4, as the paper plugs the backbone in.
        assert cfg.MODEL.BACKBONE.NAME == "build_resnext_backbone"
        assert list(node.OUT_FEATURES) == ["res4"]
        solver = cfg.SOLVER
        assert (solver.WEIGHT_DECAY, solver.MOMENTUM, solver.GAMMA) == (1e-4, 0.9, 0.1)
        assert (tuple(solver.STEPS), solver.MAX_ITER) == ((120000,), 180000)
        assert solver.REFERENCE_WORLD_SIZE == 8
        assert solver.LR_SCHEDULER_NAME == "WarmupMultiStepLR"
        assert tuple(cfg.DATASETS.TRAIN) == ("coco_2014_trainval35k",)
        assert tuple(cfg.DATASETS.TEST) == ("coco_2014_minival",)
        if step == "rpn":
            assert cfg.MODEL.META_ARCHITECTURE == "ProposalNetwork"
            assert (solver.IMS_PER_BATCH, solver.BASE_LR) == (16, 0.02)
            assert cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE == 256
        else:
            assert cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN"
            assert cfg.MODEL.ROI_HEADS.NAME == "ResNeXtRes5ROIHeads"
            assert cfg.MODEL.LOAD_PROPOSALS
            assert cfg.MODEL.PROPOSAL_GENERATOR.NAME == "PrecomputedProposals"
            assert (solver.IMS_PER_BATCH, solver.BASE_LR) == (8, 0.005)
            assert cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE == 64


def test_schedule_scales_linearly_to_the_world_size():
    cfg = build_config(str(APPENDIX_B / "X50_32x4d_rpn.yaml"))
    assert schedule_summary(cfg, 8).startswith(
        "effective schedule on 8 process(es): batch 16 images (2 per process), lr 0.02, "
        "steps (120000,), "
        "max_iter 180000"
    )
    assert schedule_summary(cfg, 2).startswith(
        "effective schedule on 2 process(es): batch 4 images (2 per process), lr 0.005, "
        "steps (480000,), "
        "max_iter 720000"
    )


TINY = [*TINY_DEMO_OPTS, "MODEL.RPN.POST_NMS_TOPK_TEST", "300"]


@pytest.fixture(scope="module")
def finished_run(demo_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("appendix_b")
    recipe = AppendixB(str(DEMO_RPN), str(DEMO_FAST_RCNN), TINY, str(out))
    results = recipe.run()
    return recipe, results


def test_two_step_recipe_runs_end_to_end(finished_run):
    recipe, results = finished_run
    # Every image of every split has its proposals, in a file Detectron2's format reads.
    for split in ("demo_trees_train", "demo_trees_val"):
        data = load_proposal_file(recipe.proposal_file(split))
        ids = {r["image_id"] for r in DatasetCatalog.get(split)}
        assert set(data["ids"]) == ids and len(data["ids"]) == len(ids)
        assert all(len(boxes) > 0 for boxes in data["boxes"])
    # Step 2 trained on them (a fresh model, not the RPN's) and was evaluated with COCO AP.
    bbox = results["results"]["demo_trees_val"]["bbox"]
    assert 0.0 <= bbox["AP"] <= 100.0 and {"AP50", "APs", "APm", "APl"} <= set(bbox)
    recall = results["recall"]["demo_trees_val"]
    assert 0.0 < recall["AR@100"] <= recall["AR@1000"] <= 100.0  # percent, as Detectron2 reports
    table = (recipe.stage_dir("evaluate") / "results.md").read_text()
    assert "demo_trees_val" in table and "no row for this model" in table
    fast_rcnn_cfg = (recipe.stage_dir("fast_rcnn") / "config.yaml").read_text()
    assert "model_final" not in fast_rcnn_cfg  # not started from the RPN step's weights


def test_a_second_run_skips_finished_stages(finished_run, caplog):
    recipe, results = finished_run
    outputs = [
        recipe.stage_dir("rpn") / "model_final.pth",
        recipe.proposal_file("demo_trees_train"),
        recipe.stage_dir("fast_rcnn") / "model_final.pth",
    ]
    before = [p.stat().st_mtime_ns for p in outputs]
    again = AppendixB(str(DEMO_RPN), str(DEMO_FAST_RCNN), TINY, str(recipe.root)).run()
    assert [p.stat().st_mtime_ns for p in outputs] == before
    assert again == results


def test_stages_run_as_two_processes_on_gloo(finished_run, demo_root, tmp_path):
    """Keep the finished RPN step; proposals, Fast R-CNN and evaluation run distributed."""
    recipe, _ = finished_run
    out = tmp_path / "run"
    shutil.copytree(recipe.stage_dir("rpn"), out / "rpn")
    env = {**os.environ, "DETECTRON2_DATASETS": str(demo_root), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "train_appendix_b.py"),
            "--num-gpus",
            "2",
            "--rpn-config-file",
            str(DEMO_RPN),
            "--config-file",
            str(DEMO_FAST_RCNN),
            "--output-dir",
            str(out),
            *TINY,  # the config the copied RPN step was made with: it is reused
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-4000:]
    assert "stage 'rpn': complete, skipped" in log
    assert "effective schedule on 2 process(es): batch 2 images" in log
    ids = {r["image_id"] for r in DatasetCatalog.get("demo_trees_train")}
    data = load_proposal_file(out / "proposals" / "demo_trees_train.pkl")
    assert sorted(data["ids"]) == sorted(ids)  # both shards gathered, none twice
    done = json.loads((out / "evaluate" / "stage_done.json").read_text())
    assert "AP" in done["results"]["demo_trees_val"]["bbox"]
    assert "| AP@0.5 |" in run.stdout


# -- the record of each stage: reused only for the config that made it ---------------------


def _copy(recipe, tmp_path):
    """A copy of the finished run, to change without touching the module's fixture."""
    out = tmp_path / "run"
    shutil.copytree(recipe.root, out)
    return out


def _files(root):
    return {p: p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


def _done(root, stage):
    return json.loads((root / stage / "stage_done.json").read_text())


def test_each_stage_records_what_it_was_made_with(finished_run):
    recipe, _ = finished_run
    for stage in STAGES:
        assert _done(recipe.root, stage)["record"] == recipe.stage_record(stage)
    rpn = _done(recipe.root, "rpn")
    assert rpn["record"]["config"]["SOLVER.MAX_ITER"] == 2
    assert rpn["record"]["config"]["MODEL.RPN.POST_NMS_TOPK_TEST"] == 300
    assert "OUTPUT_DIR" not in rpn["record"]["config"]  # a moved folder stays reusable
    proposals = _done(recipe.root, "proposals")
    assert proposals["record"]["inputs"] == {"rpn": rpn["run_id"]}
    assert proposals["record"]["config"]["splits"] == ["demo_trees_train", "demo_trees_val"]


def test_a_stage_made_with_another_config_is_refused_naming_the_keys(finished_run, tmp_path):
    out = _copy(finished_run[0], tmp_path)
    before = _files(out)
    recipe = AppendixB(
        str(DEMO_RPN), str(DEMO_FAST_RCNN), [*TINY, "SOLVER.MAX_ITER", "3"], str(out)
    )
    pattern = (
        r"stage 'rpn' in .*rpn \(finished\) was made with another config or input than this "
        r"run's: SOLVER\.MAX_ITER was 2, now 3; expected what it was made with: restore that, or "
        r"pass --rerun-changed-stages to run it and the stages after it again \(the old folder is "
        r"then kept as rpn\.stale-1\)"
    )
    with pytest.raises(ConfigError, match=pattern):
        recipe.check()  # in the launching process, before any stage starts
    with pytest.raises(ConfigError, match=pattern):
        recipe.run()
    assert _files(out) == before  # nothing written, nothing moved


def test_new_proposals_make_the_later_stages_stale(finished_run, tmp_path):
    out = _copy(finished_run[0], tmp_path)
    shutil.rmtree(out / "rpn")  # the RPN step will be trained again
    recipe = AppendixB(str(DEMO_RPN), str(DEMO_FAST_RCNN), TINY, str(out))
    with pytest.raises(ConfigError, match=r"stage 'proposals' .*\(finished\) .*: stage 'rpn', whose outputs it reads, runs again"):  # fmt: skip
        recipe.plan()
    recipe.rerun_changed_stages = True
    assert recipe.plan() == {"rpn": "run", "proposals": "rerun", "fast_rcnn": "rerun", "evaluate": "rerun"}  # fmt: skip


def test_eval_only_needs_current_earlier_stages(finished_run, tmp_path):
    out = _copy(finished_run[0], tmp_path)
    same = AppendixB(str(DEMO_RPN), str(DEMO_FAST_RCNN), TINY, str(out))
    assert same.plan(("evaluate",), redo=("evaluate",)) == {
        "rpn": "skip", "proposals": "skip", "fast_rcnn": "skip", "evaluate": "run"
    }  # fmt: skip
    changed = AppendixB(str(DEMO_RPN), str(DEMO_FAST_RCNN), [*TINY, "SOLVER.BASE_LR", "0.5"], str(out))  # fmt: skip
    with pytest.raises(ConfigError, match=r"stage 'rpn' .*SOLVER\.BASE_LR was 0\.02, now 0\.5; .*run the whole recipe with --rerun-changed-stages"):  # fmt: skip
        changed.plan(("evaluate",), redo=("evaluate",))
    shutil.rmtree(out / "fast_rcnn")
    with pytest.raises(ConfigError, match=r"stage 'fast_rcnn' is not finished in .*\['evaluate'\] read its outputs"):  # fmt: skip
        same.plan(("evaluate",), redo=("evaluate",))


def test_unrecorded_and_unfinished_stages_are_not_trusted_blindly(finished_run, tmp_path):
    out = _copy(finished_run[0], tmp_path)
    marker = _done(out, "rpn")
    del marker["record"]  # as an earlier version wrote it
    (out / "rpn" / "stage_done.json").write_text(json.dumps(marker))
    recipe = AppendixB(str(DEMO_RPN), str(DEMO_FAST_RCNN), TINY, str(out))
    with pytest.raises(ConfigError, match=r"stage 'rpn' .*: it records no config"):
        recipe.plan()
    out = _copy(finished_run[0], tmp_path / "second")
    (out / "fast_rcnn" / "stage_done.json").unlink()  # killed before it finished ...
    shutil.rmtree(out / "evaluate")  # ... so evaluation never ran
    assert AppendixB(str(DEMO_RPN), str(DEMO_FAST_RCNN), TINY, str(out)).plan()["fast_rcnn"] == "run"  # fmt: skip
    fast_rcnn = tmp_path / "fast_rcnn_lr.yaml"
    fast_rcnn.write_text(f"_BASE_: {DEMO_FAST_RCNN}\nSOLVER:\n  BASE_LR: 0.01\n")
    changed = AppendixB(str(DEMO_RPN), str(fast_rcnn), TINY, str(out))
    with pytest.raises(ConfigError, match=r"stage 'fast_rcnn' .*\(unfinished\) .*SOLVER\.BASE_LR was 0\.02, now 0\.01"):  # fmt: skip
        changed.plan()


def test_rerun_changed_stages_runs_them_again_and_keeps_the_old(finished_run, tmp_path):
    out = _copy(finished_run[0], tmp_path)
    fast_rcnn = tmp_path / "fast_rcnn_lr.yaml"
    fast_rcnn.write_text(f"_BASE_: {DEMO_FAST_RCNN}\nSOLVER:\n  BASE_LR: 0.01\n")
    rpn_files = _files(out / "rpn")
    old_model = (out / "fast_rcnn" / "model_final.pth").read_bytes()
    recipe = AppendixB(str(DEMO_RPN), str(fast_rcnn), TINY, str(out), rerun_changed_stages=True)
    assert recipe.plan() == {"rpn": "skip", "proposals": "skip", "fast_rcnn": "rerun", "evaluate": "rerun"}  # fmt: skip
    results = recipe.run()
    assert (out / "fast_rcnn.stale-1" / "model_final.pth").read_bytes() == old_model
    assert (out / "evaluate.stale-1" / "stage_done.json").is_file()
    assert _done(out, "fast_rcnn")["record"]["config"]["SOLVER.BASE_LR"] == 0.01
    assert _files(out / "rpn") == rpn_files  # the unchanged step is reused as it was
    assert "AP" in results["results"]["demo_trees_val"]["bbox"]
    again = AppendixB(str(DEMO_RPN), str(fast_rcnn), TINY, str(out))
    assert set(again.plan().values()) == {"skip"}


def test_the_tool_refuses_a_changed_stage_in_one_line(finished_run, demo_root, tmp_path):
    out = _copy(finished_run[0], tmp_path)
    run = subprocess.run(
        [sys.executable, str(REPO / "tools" / "train_appendix_b.py"),
         "--rpn-config-file", str(DEMO_RPN), "--config-file", str(DEMO_FAST_RCNN),
         "--output-dir", str(out), *TINY, "MODEL.RPN.POST_NMS_TOPK_TEST", "100"],
        cwd=REPO, env={**os.environ, "DETECTRON2_DATASETS": str(demo_root)},
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 2, (run.stdout + run.stderr)[-3000:]
    assert "Traceback" not in run.stdout + run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert re.search(r"^error: stage 'rpn' .*MODEL\.RPN\.POST_NMS_TOPK_TEST was 300, now 100; .*--rerun-changed-stages", last), last  # fmt: skip
