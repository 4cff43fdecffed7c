"""datasets/prepare_coco.py and the paper's splits, on small COCO-shaped trees built here."""

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog

from resnext_det.reproduction.data import check_coco, find_coco_layout, register_coco2014_splits

from ._tools import run_cli

CATEGORIES = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]


def _write_split(coco: Path, folder: str, json_name: str, image_ids: list[int]) -> None:
    (coco / folder).mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id in image_ids:
        name = f"COCO_{folder}_{image_id:012d}.jpg"
        cv2.imwrite(str(coco / folder / name), np.full((48, 64, 3), image_id % 255, np.uint8))
        images.append({"id": image_id, "file_name": name, "height": 48, "width": 64})
        annotations.append(
            {
                "id": image_id * 10,
                "image_id": image_id,
                "category_id": CATEGORIES[image_id % 2]["id"],
                "bbox": [4.0, 4.0, 20.0, 16.0],
                "area": 320.0,
                "iscrowd": 0,
            }
        )
    data = {"images": images, "annotations": annotations, "categories": CATEGORIES}
    (coco / "annotations").mkdir(exist_ok=True)
    (coco / "annotations" / json_name).write_text(json.dumps(data))


def _coco_2017(root: Path) -> Path:
    coco = root / "coco"
    _write_split(coco, "train2017", "instances_train2017.json", [1, 2, 3, 4])
    _write_split(coco, "val2017", "instances_val2017.json", [5, 6])
    return coco


def _coco_2014_with_ids(root: Path) -> Path:
    coco = root / "coco"
    _write_split(coco, "train2014", "instances_train2014.json", [1, 2, 3])
    _write_split(coco, "val2014", "instances_val2014.json", [10, 11, 12, 13])
    (coco / "annotations" / "minival2014_ids.txt").write_text("11\n13\n")
    return coco


def _prepare_coco(root: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli("datasets/prepare_coco.py", "--root", root, *args)


def test_coco_2017_provides_the_2014_splits(tmp_path):
    _coco_2017(tmp_path)
    assert find_coco_layout(tmp_path).form == "2017"
    assert check_coco(tmp_path, expect_full=False) == []
    assert register_coco2014_splits(tmp_path) == "2017"
    minival = DatasetCatalog.get("coco_2014_minival")
    assert sorted(r["image_id"] for r in minival) == [5, 6]
    assert all(Path(r["file_name"]).is_file() for r in minival)
    trainval = DatasetCatalog.get("coco_2014_trainval35k")
    assert sorted(r["image_id"] for r in trainval) == [1, 2, 3, 4]
    assert MetadataCatalog.get("coco_2014_minival").thing_classes == ["person", "car"]
    assert MetadataCatalog.get("coco_2014_minival").json_file.endswith("instances_val2017.json")


def test_2014_images_with_a_minival_id_list(tmp_path):
    coco = _coco_2014_with_ids(tmp_path)
    run = _prepare_coco(tmp_path, "--allow-subset")
    assert run.returncode == 0, run.stderr
    assert "COCO 2014 layout" in run.stdout
    minival = json.loads((coco / "annotations" / "instances_minival2014.json").read_text())
    rest = json.loads((coco / "annotations" / "instances_valminusminival2014.json").read_text())
    assert [i["id"] for i in minival["images"]] == [11, 13]
    assert [i["id"] for i in rest["images"]] == [10, 12]
    assert [a["image_id"] for a in minival["annotations"]] == [11, 13]
    register_coco2014_splits(tmp_path)
    trainval = DatasetCatalog.get("coco_2014_trainval35k")
    assert sorted(r["image_id"] for r in trainval) == [1, 2, 3, 10, 12]


def test_each_problem_is_one_clear_line(tmp_path):
    coco = _coco_2017(tmp_path)
    (coco / "val2017" / "COCO_val2017_000000000006.jpg").unlink()
    run = _prepare_coco(tmp_path)
    assert run.returncode == 2
    errors = run.stderr.strip().splitlines()
    assert "Traceback" not in run.stderr
    assert any("1 of the 2 images" in e and "COCO_val2017_000000000006.jpg" in e for e in errors)
    assert any("coco_2014_minival has 2 images" in e and "expected 5000" in e for e in errors)
    assert any("coco_2014_trainval35k has 4 images" in e and "expected 118287" in e for e in errors)
    assert any("coco_2014_minival has 2 annotations" in e and "expected 36781" in e for e in errors)


def test_a_malformed_json_is_one_problem_not_a_crash(tmp_path):
    coco = _coco_2017(tmp_path)
    (coco / "annotations" / "instances_val2017.json").write_text('{"images": [{"id": 5}]}')
    problems = check_coco(tmp_path, expect_full=False)
    assert problems == [
        f"{coco / 'annotations' / 'instances_val2017.json'}: images[0] lacks 'file_name', "
        """'height', 'width' ({"id": 5}); expected a COCO instances json: 'images' (id, """
        "file_name, height, width), 'annotations' (id, image_id, category_id, bbox) and "
        "'categories' (id, name)"
    ]


def test_no_layout_and_a_bad_id_list(tmp_path):
    run = _prepare_coco(tmp_path)
    assert run.returncode == 2
    assert "holds no complete COCO layout" in run.stderr and "instances_val2017.json" in run.stderr

    coco = _coco_2014_with_ids(tmp_path)
    (coco / "annotations" / "minival2014_ids.txt").write_text("11\n99\n")
    run = _prepare_coco(tmp_path, "--allow-subset")
    assert run.returncode == 2
    assert "names 1 image ids that instances_val2014.json does not hold" in run.stderr
    assert not (coco / "annotations" / "instances_minival2014.json").exists()
