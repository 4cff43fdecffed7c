"""The main command's pipeline on a reduced schedule: data -> train -> COCO AP -> drawings."""

import math

from PIL import Image

from resnext_det.engine.demo import run_demo

from ._paths import TINY_DEMO_OPTS


def test_demo_pipeline_yields_coco_ap(demo_root, tmp_path):
    result = run_demo(
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
