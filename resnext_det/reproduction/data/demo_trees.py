"""The bundled demo dataset: tree crowns in NEON aerial photos, as COCO-format tiles.

The photos and their Pascal VOC boxes ship in the ``deepforest`` package (MIT). Tiles
are split into train and val by source photo, so no pixel of a val photo is seen in
training. A box cut by a tile edge is kept (clipped) when at least ``min_visible`` of it
lies inside the tile; a smaller sliver becomes an ``iscrowd`` region, which Detectron2
leaves out of training and COCO evaluation ignores, so a detector is neither taught to
miss half-trees nor punished for finding them.
"""

import importlib.util
import json
import logging
import math
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from PIL import Image

from ...utils.errors import ConfigError, DataError, MissingFileError

__all__ = [
    "DEMO_DATASETS",
    "SOURCE_PHOTOS",
    "TilingSettings",
    "demo_dataset_dir",
    "deepforest_data_dir",
    "is_prepared",
    "prepare_demo_dataset",
    "register_demo_datasets",
]

logger = logging.getLogger(__name__)

DATASET_DIRNAME = "demo_trees"
CATEGORY = {"id": 1, "name": "tree"}
# Photo -> split. Val is one whole photo from the Yellowstone site that also has a
# (different) training photo; OSBS (Florida) and SOAP (California) add variety to train.
SOURCE_PHOTOS: dict[str, str] = {
    "2019_YELL_2_528000_4978000_image_crop2": "train",
    "OSBS_029": "train",
    "SOAP_061": "train",
    "2019_YELL_2_541000_4977000_image_crop": "val",
}
SPLITS = ("train", "val")
DEMO_DATASETS = {f"demo_trees_{split}": split for split in SPLITS}


@dataclass(frozen=True)
class TilingSettings:
    """How photos are cut into tiles.

    Attributes:
        tile_size: side of the square tiles, in pixels.
        train_stride: distance between train tiles (< tile_size overlaps them: more tiles).
        val_stride: distance between val tiles.
        min_visible: a box cut by a tile edge is kept if this fraction of it is inside.
    """

    tile_size: int = 400
    train_stride: int = 200
    val_stride: int = 400
    min_visible: float = 0.5

    def __post_init__(self) -> None:
        for name in ("tile_size", "train_stride", "val_stride"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} is invalid; expected an integer >= 1")
        if not 0.0 < self.min_visible <= 1.0:
            raise ConfigError(
                f"min_visible={self.min_visible!r} is invalid; expected 0 < value <= 1"
            )


def deepforest_data_dir() -> Path:
    """The folder of photos that the ``deepforest`` package ships (found without importing it)."""
    spec = importlib.util.find_spec("deepforest")
    if spec is None or not spec.submodule_search_locations:
        raise MissingFileError(
            "the demo photos come from the package deepforest==2.1.0, which is not installed; "
            "run `make setup` (or `pip install --no-deps deepforest==2.1.0`)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def demo_dataset_dir(root: os.PathLike) -> Path:
    """Where the demo dataset lives under a datasets root."""
    return Path(root) / DATASET_DIRNAME


def _annotation_file(dataset_dir: Path, split: str) -> Path:
    return dataset_dir / "annotations" / f"instances_{split}.json"


def is_prepared(root: os.PathLike) -> bool:
    """True when both splits' json files exist (they are written last, atomically)."""
    return all(_annotation_file(demo_dataset_dir(root), split).is_file() for split in SPLITS)


def read_voc_boxes(xml_path: Path) -> list[tuple[float, float, float, float]]:
    """(xmin, ymin, xmax, ymax) of every object in a Pascal VOC annotation file."""
    boxes = []
    for obj in ET.parse(xml_path).getroot().iter("object"):
        box = obj.find("bndbox")
        xmin, ymin, xmax, ymax = (float(box.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
        if xmax <= xmin or ymax <= ymin:
            raise DataError(f"{xml_path}: degenerate box {(xmin, ymin, xmax, ymax)}")
        boxes.append((xmin, ymin, xmax, ymax))
    return boxes


def tile_origins(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles covering ``[0, length)``, spread evenly, none past the edge."""
    if length <= tile:
        return [0]
    count = math.ceil((length - tile) / stride) + 1
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def _tile_annotations(
    boxes: Sequence[tuple[float, float, float, float]],
    window: tuple[int, int, int, int],
    min_visible: float,
) -> Iterator[dict]:
    x0, y0, x1, y1 = window
    for xmin, ymin, xmax, ymax in boxes:
        cx0, cy0, cx1, cy1 = max(xmin, x0), max(ymin, y0), min(xmax, x1), min(ymax, y1)
        if cx1 <= cx0 or cy1 <= cy0:
            continue
        visible = (cx1 - cx0) * (cy1 - cy0) / ((xmax - xmin) * (ymax - ymin))
        width, height = cx1 - cx0, cy1 - cy0
        yield {
            "bbox": [cx0 - x0, cy0 - y0, width, height],
            "area": width * height,
            "iscrowd": 0 if visible >= min_visible else 1,
            "category_id": CATEGORY["id"],
        }


def _write_split(
    split: str, photos: Sequence[str], source: Path, out_dir: Path, settings: TilingSettings
) -> dict:
    stride = settings.train_stride if split == "train" else settings.val_stride
    images, annotations = [], []
    (out_dir / split).mkdir(parents=True, exist_ok=True)
    for photo in photos:
        boxes = read_voc_boxes(source / f"{photo}.xml")
        with Image.open(source / f"{photo}.png") as opened:
            image = opened.convert("RGB")
        size = settings.tile_size
        for top in tile_origins(image.height, size, stride):
            for left in tile_origins(image.width, size, stride):
                window = (left, top, min(left + size, image.width), min(top + size, image.height))
                file_name = f"{photo}_{left:04d}_{top:04d}.png"
                image.crop(window).save(out_dir / split / file_name)
                image_id = len(images) + 1
                images.append(
                    {
                        "id": image_id,
                        "file_name": file_name,
                        "width": window[2] - left,
                        "height": window[3] - top,
                        "source_photo": photo,
                    }
                )
                for ann in _tile_annotations(boxes, window, settings.min_visible):
                    annotations.append({"id": len(annotations) + 1, "image_id": image_id, **ann})
    return {
        "info": {"description": f"deepforest tree crowns, {split} split, tiled"},
        "licenses": [{"name": "MIT (deepforest package)"}],
        "images": images,
        "annotations": annotations,
        "categories": [{**CATEGORY, "supercategory": "plant"}],
    }


def prepare_demo_dataset(
    root: os.PathLike, settings: TilingSettings = TilingSettings(), overwrite: bool = False
) -> Path:
    """Tile the deepforest photos into ``<root>/demo_trees`` (COCO json + PNG tiles).

    The dataset is built in a temporary folder beside the target and moved into place
    when complete, so an interrupted run never leaves a half-written dataset behind.

    Args:
        root: the datasets root (Detectron2's ``$DETECTRON2_DATASETS``, default ``datasets``).
        settings: tiling parameters.
        overwrite: rebuild even if a complete dataset is present.

    Returns:
        The dataset folder.
    """
    target = demo_dataset_dir(root)
    if is_prepared(root) and not overwrite:
        logger.info("demo dataset already prepared at %s", target)
        return target
    source = deepforest_data_dir()
    missing = [
        p for p in SOURCE_PHOTOS for ext in (".png", ".xml") if not (source / f"{p}{ext}").is_file()
    ]
    if missing:
        raise MissingFileError(
            f"deepforest's data folder {source} lacks the photos {sorted(set(missing))}"
        )

    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{DATASET_DIRNAME}-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{DATASET_DIRNAME}-", dir=target.parent))
    try:
        for split in SPLITS:
            photos = [photo for photo, photo_split in SOURCE_PHOTOS.items() if photo_split == split]
            coco = _write_split(split, photos, source, staging, settings)
            _annotation_file(staging, split).parent.mkdir(exist_ok=True)
            _annotation_file(staging, split).write_text(json.dumps(coco))
            n_boxes = sum(1 for a in coco["annotations"] if not a["iscrowd"])
            logger.info("demo_trees_%s: %d tiles, %d boxes", split, len(coco["images"]), n_boxes)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def register_demo_datasets(root: os.PathLike) -> None:
    """Register ``demo_trees_train`` and ``demo_trees_val`` for a datasets root.

    Registration is lazy (the json is read when the dataset is used), so it is cheap and
    works before the data is prepared; calling it again re-points the names at ``root``.
    """
    dataset_dir = demo_dataset_dir(root)
    for name, split in DEMO_DATASETS.items():
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        register_coco_instances(
            name,
            {"thing_classes": [CATEGORY["name"]]},
            str(_annotation_file(dataset_dir, split)),
            str(dataset_dir / split),
        )
