"""Faulty datasets meet the documented policy: fixed and counted, or refused at start."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.structures import BoxMode

from resnext_det.reproduction.data.sanitize import check_image_files, sanitize_annotations
from resnext_det.utils.errors import DataError

from ._paths import DEMO_CONFIG, REPO, TINY_DEMO_OPTS


def _faulty_copy(demo_root, tmp_path, fault: str):
    """The demo train split, copied, with one kind of fault planted."""
    source = demo_root / "demo_trees"
    root = tmp_path / "faulty"
    shutil.copytree(source / "train", root / "images")
    coco = json.loads((source / "annotations" / "instances_train.json").read_text())
    images = coco["images"]
    counts = {i["id"]: sum(a["image_id"] == i["id"] for a in coco["annotations"]) for i in images}
    first = max(images, key=lambda i: counts[i["id"]])  # one with many boxes
    others = [i for i in images if i is not first]
    if fault == "tolerable":
        anns = [a for a in coco["annotations"] if a["image_id"] == first["id"]]
        anns[0]["bbox"] = [10.0, 10.0, 0.0, 12.0]  # zero width: dropped
        anns[1]["bbox"] = [-20.0, 5.0, 40.0, 30.0]  # sticks out left: clipped
        anns[2]["bbox"] = [900.0, 900.0, 20.0, 20.0]  # outside: dropped
        coco["annotations"] = [
            a for a in coco["annotations"] if a["image_id"] != others[0]["id"]
        ]  # an image without annotations: skipped in training
        for image in others[1:40]:  # header fine, data cut short: skipped when drawn
            corrupt = root / "images" / image["file_name"]
            corrupt.write_bytes(corrupt.read_bytes()[:2000])
    elif fault == "missing image":
        os.remove(root / "images" / first["file_name"])
    elif fault == "wrong size":
        first["width"] = 512
    elif fault == "unknown category":
        coco["annotations"][0]["category_id"] = 99
    (root / "train.json").write_text(json.dumps(coco))
    name = f"faulty_{fault.replace(' ', '_')}_{tmp_path.name}"
    return root, name


def _register(root, name):
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_coco_instances(name, {}, str(root / "train.json"), str(root / "images"))


def test_sanitize_fixes_and_counts_boxes():
    record = {
        "image_id": 7,
        "width": 100,
        "height": 80,
        "annotations": [
            {"bbox": [10, 10, 20, 20], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0},
            {"bbox": [10, 10, -5, 20], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0},
            {"bbox": [float("nan"), 1, 2, 3], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0},
            {"bbox": [90, 70, 30, 30], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0},
            {"bbox": [200, 200, 5, 5], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0},
            {"bbox": [1, 2, 3], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0},
        ],
    }
    cleaned, report = sanitize_annotations([record], "toy")
    assert [a["bbox"] for a in cleaned[0]["annotations"]] == [
        [10.0, 10.0, 30.0, 30.0],
        [90.0, 70.0, 100.0, 80.0],
    ]
    assert dict(report.counts) == {
        "degenerate boxes dropped (width or height <= 0)": 1,
        "degenerate boxes dropped (not 4 finite numbers)": 2,
        "boxes clipped to the image": 1,
        "boxes dropped (entirely outside the image)": 1,
    }
    assert len(record["annotations"]) == 6  # the input is left as it was
    assert "toy: 1 images; 1 degenerate boxes dropped" in report.summary()


def _train_net(demo_root, name, *opts):
    env = {**os.environ, "DETECTRON2_DATASETS": str(demo_root)}
    code = (
        "import runpy, sys\n"
        "from detectron2.data.datasets import register_coco_instances\n"
        f"register_coco_instances({name!r}, {{}}, sys.argv[1], sys.argv[2])\n"
        "sys.argv = [sys.argv[3]] + sys.argv[4:]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *opts[:2], str(REPO / "tools" / "train_net.py"), *opts[2:]],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip


def test_training_runs_through_tolerable_faults(demo_root, tmp_path):
    root, name = _faulty_copy(demo_root, tmp_path, "tolerable")
    run = _train_net(
        demo_root, name, str(root / "train.json"), str(root / "images"),
        "--config-file", str(DEMO_CONFIG), *TINY_DEMO_OPTS,
        "SOLVER.IMS_PER_BATCH", "4", "SOLVER.MAX_ITER", "8", "INPUT.CROP.ENABLED", "False",
        "DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", "()",
        "OUTPUT_DIR", str(tmp_path / "out"),
    )  # fmt: skip
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    assert "1 degenerate boxes dropped (width or height <= 0)" in log
    assert "1 boxes clipped to the image" in log and "1 boxes dropped (entirely outside" in log
    assert re.search(r"Removed \d+ images with no usable annotations", log)
    assert re.search(r"skipping image .*\.png \(corrupt: .*\); \d+ skipped so far", log)
    assert (tmp_path / "out" / "model_final.pth").is_file()


@pytest.mark.parametrize(
    "fault,message",
    [
        ("missing image", r"1 of \d+ images cannot be used \(missing: .*\.png\)"),
        ("wrong size", r"size 400x400 where the annotations say 512x400"),
        ("unknown category", r"cannot be loaded: Encountered category_id=99"),
    ],
)
def test_faults_that_fail_at_start(demo_root, tmp_path, fault, message):
    root, name = _faulty_copy(demo_root, tmp_path, fault)
    run = _train_net(
        demo_root, name, str(root / "train.json"), str(root / "images"),
        "--config-file", str(DEMO_CONFIG), *TINY_DEMO_OPTS,
        "DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", "()",
        "OUTPUT_DIR", str(tmp_path / "out"),
    )  # fmt: skip
    assert run.returncode == 2, (run.stdout + run.stderr)[-3000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: dataset '{name}'") and re.search(message, last)
    assert "Traceback" not in run.stdout + run.stderr
    assert not (tmp_path / "out" / "last_checkpoint").exists()  # nothing started


def test_image_header_check_names_the_files(demo_root, tmp_path):
    root, name = _faulty_copy(demo_root, tmp_path, "missing image")
    _register(root, name)
    with pytest.raises(DataError, match=r"cannot be used \(missing: "):
        check_image_files(DatasetCatalog.get(name), name)
