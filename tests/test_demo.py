"""The main command's pipeline on a reduced schedule: data -> train -> COCO AP -> drawings."""

import math
import re
import time

from PIL import Image

from resnext_det.reproduction.engine.demo_training import train_demo

from ._paths import TINY_DEMO_OPTS


def test_demo_pipeline_yields_coco_ap(demo_root, tmp_path):
    result = train_demo(
        opts=[*TINY_DEMO_OPTS, "OUTPUT_DIR", str(tmp_path)], root=str(demo_root), num_images=2
    )
    assert result.dataset == "demo_trees_val"
    assert math.isfinite(result.ap) and 0 <= result.ap <= result.ap50 <= 100
    assert len(result.drawn_images) == 2
    for path in result.drawn_images:
        with Image.open(path) as drawn:
            assert drawn.size == (400, 400)
    assert "AP50" in result.summary()
    assert (tmp_path / "inference" / "demo_trees_val" / "coco_instances_results.json").is_file()


def test_demo_says_how_long_training_will_take_from_its_first_steps(capsys):
    from detectron2.engine import TrainerBase

    from resnext_det.reproduction.engine.demo_training import TrainingTimeEstimate

    class Steps(TrainerBase):
        def run_step(self):
            time.sleep(0.01)

    trainer = Steps()
    trainer.register_hooks([TrainingTimeEstimate(skip=2, measure=3)])
    trainer.train(0, 600)
    line = capsys.readouterr().out.strip().splitlines()[0]
    # 0.01 s per step, 595 steps left: about 6 s, which rounds to 0 min.
    assert re.fullmatch(
        r"demo: 0\.01 s per step on this machine \(.+\); training ends in "
        r"about 0 min, then evaluation and drawing",
        line,
    ), line
