"""The bundled demo dataset: real photos, COCO json, split by source photo."""

import json

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image
from pycocotools.coco import COCO

from resnext_det.reproduction.data import (
    TilingSettings,
    demo_dataset_dir,
    is_prepared,
    prepare_demo_dataset,
)
from resnext_det.reproduction.data.demo_trees import (
    SOURCE_PHOTOS,
    deepforest_data_dir,
    read_voc_boxes,
    tile_origins,
)


def _coco(root, split):
    return json.loads(
        (demo_dataset_dir(root) / "annotations" / f"instances_{split}.json").read_text()
    )


def test_split_by_source_photo(demo_root):
    train, val = _coco(demo_root, "train"), _coco(demo_root, "val")
    train_photos = {im["source_photo"] for im in train["images"]}
    val_photos = {im["source_photo"] for im in val["images"]}
    assert train_photos and val_photos and not train_photos & val_photos
    assert val_photos == {p for p, split in SOURCE_PHOTOS.items() if split == "val"}
    train_files = {im["file_name"] for im in train["images"]}
    assert not any(name.startswith(tuple(val_photos)) for name in train_files)


def test_tiles_and_boxes_are_consistent(demo_root):
    for split in ("train", "val"):
        coco = _coco(demo_root, split)
        assert len(coco["images"]) >= 10 and len(coco["annotations"]) >= 300
        images = {im["id"]: im for im in coco["images"]}
        for im in coco["images"]:
            with Image.open(demo_dataset_dir(demo_root) / split / im["file_name"]) as tile:
                assert tile.size == (im["width"], im["height"]) == (400, 400)
        for ann in coco["annotations"]:
            x, y, w, h = ann["bbox"]
            image = images[ann["image_id"]]
            assert w > 0 and h > 0 and x >= 0 and y >= 0
            assert x + w <= image["width"] and y + h <= image["height"]
            assert ann["category_id"] == 1 and ann["area"] == pytest.approx(w * h)


def test_every_tree_of_the_val_photo_is_labelled(demo_root):
    """Each whole val box appears, unclipped, in at least one tile (tiles overlap)."""
    val_photo = next(p for p, split in SOURCE_PHOTOS.items() if split == "val")
    boxes = read_voc_boxes(deepforest_data_dir() / f"{val_photo}.xml")
    coco = _coco(demo_root, "val")
    origins = {
        im["id"]: tuple(int(v) for v in im["file_name"][:-4].split("_")[-2:])
        for im in coco["images"]
    }
    found = {
        (
            round(x + origins[a["image_id"]][0]),
            round(y + origins[a["image_id"]][1]),
            round(w),
            round(h),
        )
        for a in coco["annotations"]
        for x, y, w, h in [a["bbox"]]
    }
    whole = {(round(x0), round(y0), round(x1 - x0), round(y1 - y0)) for x0, y0, x1, y1 in boxes}
    assert len(whole & found) / len(whole) > 0.9


def test_loads_with_pycocotools_and_detectron2(demo_root):
    coco = COCO(str(demo_dataset_dir(demo_root) / "annotations" / "instances_val.json"))
    assert coco.getCatIds() == [1]
    records = DatasetCatalog.get("demo_trees_val")
    assert len(records) == len(coco.getImgIds())
    assert MetadataCatalog.get("demo_trees_val").thing_classes == ["tree"]
    assert all(obj["bbox_mode"].name == "XYWH_ABS" for r in records for obj in r["annotations"])


def test_prepare_is_idempotent_and_leaves_no_staging(demo_root):
    before = (
        (demo_dataset_dir(demo_root) / "annotations" / "instances_train.json").stat().st_mtime_ns
    )
    prepare_demo_dataset(demo_root)
    after = (
        (demo_dataset_dir(demo_root) / "annotations" / "instances_train.json").stat().st_mtime_ns
    )
    assert before == after
    assert [p.name for p in demo_root.iterdir()] == ["demo_trees"]


def test_custom_tiling(tmp_path):
    prepare_demo_dataset(tmp_path, TilingSettings(tile_size=300, train_stride=300, val_stride=300))
    assert is_prepared(tmp_path)
    with Image.open(next((demo_dataset_dir(tmp_path) / "val").iterdir())) as tile:
        assert tile.size == (300, 300)


def test_tile_origins_cover_without_overrun():
    assert tile_origins(1249, 400, 400) == [0, 283, 566, 849]
    assert tile_origins(400, 400, 200) == [0]
    for length, tile, stride in [(2299, 400, 200), (1035, 400, 400), (401, 400, 400)]:
        origins = tile_origins(length, tile, stride)
        assert origins[0] == 0 and origins[-1] == length - tile
        assert all(b - a <= stride for a, b in zip(origins, origins[1:]))


def test_bad_tiling_values():
    with pytest.raises(ValueError, match=r"tile_size=0 is invalid; expected an integer >= 1"):
        TilingSettings(tile_size=0)
    with pytest.raises(ValueError, match=r"min_visible=1.5 is invalid"):
        TilingSettings(min_visible=1.5)
