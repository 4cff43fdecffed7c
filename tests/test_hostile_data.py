"""Hostile data: COCO jsons Detectron2 would misread, image files it would misread, class
counts that do not match, id lists that empty a split. Each is refused in one line naming
it, or read as Detectron2 reads it.

Tables over json shapes and image kinds, a property over arbitrary COCO-like jsons, real
loaders (Detectron2's mapper, PyTorch's DataLoader), and a few real tool runs for the
one-line-and-exit-code contract.
"""

import json
import logging
import re
import shutil
import struct
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from detectron2.data import (
    DatasetCatalog,
    DatasetMapper,
    MetadataCatalog,
    build_detection_train_loader,
)
from detectron2.data.datasets import register_coco_instances
from detectron2.data.detection_utils import read_image
from detectron2.modeling import build_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from torch.utils.data import DataLoader

from resnext_det.checkpoint import SafeDetectionCheckpointer
from resnext_det.reproduction.data.coco2014 import build_minival_jsons, check_coco
from resnext_det.reproduction.data.coco_json import check_coco_json
from resnext_det.reproduction.data.images import header_problem, read_image_checked
from resnext_det.reproduction.data.sanitize import (
    SkippingDatasetMapper,
    check_dataset_jsons,
    check_image_files,
    load_registered,
)
from resnext_det.reproduction.engine import build_config
from resnext_det.reproduction.engine.appendix_b import STAGES, AppendixB
from resnext_det.reproduction.engine.predictor import predict_images
from resnext_det.reproduction.engine.validate import check_class_count, check_datasets
from resnext_det.reproduction.pretrain.data import AugmentedDataset, _ImageFolderSplit
from resnext_det.utils.cli import report
from resnext_det.utils.errors import ConfigError, DataError

from ._paths import CONFIGS, DEMO_CONFIG, TINY_DEMO_OPTS
from ._photos import make_image_folder, photo_crops
from ._tools import assert_one_line_error, run_cli

# -- files ------------------------------------------------------------------------------


def _photo(path: Path, width: int = 64, height: int = 48, exif_orientation=None) -> Path:
    """A real photo crop saved as ``path`` (JPEG or PNG by its suffix)."""
    crop = photo_crops("florida", 1, max(width, height), seed=len(path.name))[0]
    image = crop.crop((0, 0, width, height))
    options = {}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[274] = exif_orientation
        options["exif"] = exif.tobytes()
    image.save(path, **options)
    return path


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` pixels, with almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def _sixteen_bit_png(path: Path) -> Path:
    values = np.linspace(0, 4095, 64 * 48).reshape(48, 64).astype(np.uint16)  # a 12-bit sensor
    Image.fromarray(values).save(path)
    return path


def _float_tiff(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).random((48, 64), dtype=np.float32)).save(path)
    return path


def _coco(folder: Path, count: int = 4, categories=("tree",)) -> dict:
    """A small valid COCO dataset in ``folder``: images on disk and their json content."""
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(1, count + 1):
        name = f"img_{i}.jpg"
        _photo(folder / name)
        images.append({"id": i, "file_name": name, "width": 64, "height": 48})
        annotations.append(
            {"id": 10 * i, "image_id": i, "category_id": 1 + i % len(categories),
             "bbox": [4.0, 4.0, 20.0, 16.0], "area": 320.0, "iscrowd": 0}
        )  # fmt: skip
    cats = [{"id": k + 1, "name": n} for k, n in enumerate(categories)]
    return {"images": images, "annotations": annotations, "categories": cats}


def _register(name: str, json_file: Path, image_root: Path) -> str:
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_coco_instances(name, {}, str(json_file), str(image_root))
    return name


# -- COCO jsons -------------------------------------------------------------------------


def _duplicate_image_id(d):
    """Image 2 takes image 1's id, its annotation too (two exports merged, say)."""
    d["images"][1]["id"] = d["annotations"][1]["image_id"] = d["images"][0]["id"]


def _duplicate_annotation_id(d):
    d["annotations"][1]["id"] = d["annotations"][0]["id"]


def _duplicate_file(d):
    d["images"][1]["file_name"] = d["images"][0]["file_name"]


JSON_CASES = {
    "an image id listed twice": (_duplicate_image_id, r"images\.json: image id 1 is listed 2 times \(files \['img_1\.jpg', 'img_2\.jpg'\]; 1 repeated ids in all\); expected one id per image"),
    "an annotation id used twice": (_duplicate_annotation_id, r"annotation id 10 is used 2 times .*expected one id per annotation"),
    "a file listed twice": (_duplicate_file, r"file 'img_1\.jpg' is listed as 2 images \(ids \[1, 2\]; 1 such files in all\); expected each file once"),
    "no categories": (lambda d: d.pop("categories"), r"images\.json: has no 'categories' key; expected a COCO instances json"),
    "no category": (lambda d: d.update(categories=[]), r"lists no category under 'categories'"),
    "annotations not a list": (lambda d: d.update(annotations={"1": {}}), r"has a dict under 'annotations', not a list"),
    "an image without height": (lambda d: d["images"][2].pop("height"), r"images\[2\] lacks 'height' \("),
    "a width given as text": (lambda d: d["images"][0].update(width="64"), r"images\[0\] has width='64' \(a str\); expected positive numbers for height and width"),
    "a category without a name": (lambda d: d["categories"][0].pop("name"), r"categories\[0\] lacks 'name'"),
    "an annotation without an id": (lambda d: d["annotations"][0].pop("id"), r"annotations\[0\] lacks 'id'"),
    "an image id that is a list": (lambda d: d["images"][0].update(id=[1]), r"images\[0\] has id=\[1\] \(a list\); expected .*integer or string ids"),
    "ids of two types": (lambda d: d["images"][0].update(id="1"), r"mixes image ids of types \['int', 'str'\]"),
    "a list, not an object": (lambda d: ("replace", [d]), r"images\.json: holds a list; expected a COCO instances json"),
    "a crowd flag that is NaN": (lambda d: d["annotations"][1].update(iscrowd=float("nan")), r"annotations\[1\] has iscrowd=nan; expected 0 or 1 \(Detectron2 would take any other value for a crowd and drop the box\)"),
    "a category id given as text": (lambda d: d["annotations"][2].update(category_id="1"), r"annotations\[2\] has category_id='1' \(a str\), but the ids under 'categories' are int; expected the same type \(Detectron2 would find no category '1'\)"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(JSON_CASES))
def test_a_json_detectron2_would_misread_is_refused_naming_it(tmp_path, case):
    change, pattern = JSON_CASES[case]
    data = _coco(tmp_path)
    changed = change(data)  # in place; or ("replace", a new document)
    data = changed[1] if isinstance(changed, tuple) and changed[0] == "replace" else data
    (tmp_path / "images.json").write_text(json.dumps(data))
    with pytest.raises(DataError) as refused:
        check_coco_json(tmp_path / "images.json")
    assert "\n" not in str(refused.value) and re.search(pattern, str(refused.value)), str(
        refused.value
    )


def test_not_json_is_one_line(tmp_path):
    (tmp_path / "images.json").write_text('{"images": [')
    with pytest.raises(
        DataError, match=r"images\.json is not valid json \(Expecting value: line 1"
    ):
        check_coco_json(tmp_path / "images.json")


def test_repeated_annotation_ids_pass_in_a_minival_json_as_in_detectron2(tmp_path, caplog):
    data = _coco(tmp_path)
    _duplicate_annotation_id(data)
    (tmp_path / "instances_minival2014.json").write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="resnext_det.reproduction.data.coco_json"):
        check_coco_json(tmp_path / "instances_minival2014.json")
    assert (
        "annotation id 10 is used 2 times" in caplog.text and "accepted in a minival" in caplog.text
    )


def test_a_duplicate_image_id_stops_the_run_before_detectron2_merges_the_images(tmp_path):
    data = _coco(tmp_path, count=6)
    _duplicate_image_id(data)
    (tmp_path / "images.json").write_text(json.dumps(data))
    name = _register("hostile_duplicate_ids", tmp_path / "images.json", tmp_path)
    # What the check prevents: Detectron2 reads one record holding the boxes of both.
    merged = [r for r in DatasetCatalog.get(name) if r["image_id"] == 1]
    assert len(merged) == 1 and len(merged[0]["annotations"]) == 2
    cfg = build_config(str(DEMO_CONFIG), [*TINY_DEMO_OPTS])
    with pytest.raises(DataError, match=r"dataset 'hostile_duplicate_ids': .*images\.json: image id 1 is listed 2 times"):  # fmt: skip
        check_datasets(cfg, [name], is_train=True)


def test_only_coco_instances_jsons_are_held_to_their_fields(tmp_path):
    lvis_like = {"images": [{"id": 1, "coco_url": "http://x/1.jpg", "height": 48, "width": 64}],
                 "annotations": [], "categories": [{"id": 1, "name": "tree"}]}  # fmt: skip
    (tmp_path / "lvis.json").write_text(json.dumps(lvis_like))
    name = "hostile_lvis_like"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: [])
    MetadataCatalog.get(name).set(json_file=str(tmp_path / "lvis.json"), evaluator_type="lvis")
    check_dataset_jsons(name)  # no file_name: fine for LVIS, not for a COCO instances json
    MetadataCatalog.remove(name)
    MetadataCatalog.get(name).set(json_file=str(tmp_path / "lvis.json"), evaluator_type="coco")
    with pytest.raises(DataError, match=r"dataset 'hostile_lvis_like': .*lvis\.json: images\[0\] lacks 'file_name'"):  # fmt: skip
        check_dataset_jsons(name)


def test_an_empty_dataset_is_refused_as_detectron2_s_loader_refuses_it(tmp_path):
    data = _coco(tmp_path, count=0)
    (tmp_path / "images.json").write_text(json.dumps(data))
    name = _register("hostile_empty", tmp_path / "images.json", tmp_path)
    with pytest.raises(DataError, match=r"dataset 'hostile_empty' holds no image; expected a dataset with images"):  # fmt: skip
        load_registered(name)


def test_a_loader_failure_says_what_the_json_lacks(tmp_path):
    data = _coco(tmp_path)
    del data["categories"]
    (tmp_path / "images.json").write_text(json.dumps(data))
    name = _register("hostile_no_categories", tmp_path / "images.json", tmp_path)
    with pytest.raises(DataError) as refused:
        load_registered(name)
    message = str(refused.value)
    assert re.search(
        r"dataset 'hostile_no_categories' cannot be loaded: .*images\.json: has no 'categories' key; expected a COCO instances json: 'images' \(id, file_name, height, width\)",
        message,
    ), message


JSON_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2, 3), st.text(max_size=4)),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=4), children, max_size=2)
    ),
    max_leaves=8,
)
ID = st.one_of(st.integers(1, 3), st.sampled_from(["1", "a"]), JSON_VALUE)
IMAGE = st.fixed_dictionaries(
    {"id": ID},
    optional={
        "file_name": st.one_of(
            st.sampled_from(["img_1.jpg", "img_2.jpg", "img_3.jpg"]), JSON_VALUE
        ),
        "width": st.one_of(st.just(64), st.sampled_from([64.0, "64", 0, -1, None])),
        "height": st.one_of(st.just(48), st.sampled_from([48.0, "48", 0, None])),
    },
)
ANNOTATION = st.fixed_dictionaries(
    {"image_id": ID},
    optional={
        "id": ID,
        "category_id": st.one_of(st.integers(1, 2), JSON_VALUE),
        "bbox": st.one_of(
            st.just([4.0, 4.0, 20.0, 16.0]), st.lists(st.integers(-5, 70), max_size=5)
        ),
        "iscrowd": st.sampled_from([0, 1]),
    },
)
COCO_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "images": st.one_of(st.lists(IMAGE, max_size=4), JSON_VALUE),
        "annotations": st.one_of(st.lists(ANNOTATION, max_size=4), JSON_VALUE),
        "categories": st.one_of(
            st.just([{"id": 1, "name": "tree"}, {"id": 2, "name": "bush"}]), JSON_VALUE
        ),
    },
)


@pytest.fixture(scope="module")
def three_photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for i in (1, 2, 3):
        _photo(folder / f"img_{i}.jpg")
    return folder


@settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=COCO_LIKE)
def test_a_json_that_passes_the_check_loads_one_record_per_image(
    three_photos, tmp_path_factory, data
):
    """The property the check guarantees: whatever the json, either it is refused in one
    line, or Detectron2 loads it (or refuses it in one line: an unknown category) into
    exactly one record per listed image, each holding only its own annotations."""
    folder = tmp_path_factory.mktemp("json")
    (folder / "images.json").write_text(json.dumps(data))
    try:
        check_coco_json(folder / "images.json")
    except DataError as e:
        assert "\n" not in str(e)
        return
    name = _register(f"hostile_property_{folder.name}", folder / "images.json", three_photos)
    try:
        records = load_registered(name)
    except DataError as e:  # unknown category ids, empty boxes, "ignore": Detectron2's own
        assert "\n" not in str(e)
        return
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    assert sorted(r["image_id"] for r in records) == sorted(i["id"] for i in data["images"])
    for record in records:
        own = [a for a in data["annotations"] if a["image_id"] == record["image_id"]]
        assert len(record["annotations"]) == len(own)


# -- categories against the class heads --------------------------------------------------


def test_a_class_count_that_differs_from_the_categories_is_refused(demo_root):
    records = DatasetCatalog.get("demo_trees_train")
    for count in ("2", "3"):  # a head with classes the data never trains
        cfg = build_config(str(DEMO_CONFIG), ["MODEL.ROI_HEADS.NUM_CLASSES", count])
        with pytest.raises(ConfigError, match=rf"MODEL\.ROI_HEADS\.NUM_CLASSES={count} does not match the 1 category of dataset 'demo_trees_train' \(tree\); expected MODEL\.ROI_HEADS\.NUM_CLASSES 1"):  # fmt: skip
            check_class_count(cfg, "demo_trees_train", records)
    check_class_count(build_config(str(DEMO_CONFIG)), "demo_trees_train", records)
    retina = build_config(str(DEMO_CONFIG), ["MODEL.META_ARCHITECTURE", "RetinaNet"])
    with pytest.raises(ConfigError, match=r"MODEL\.RETINANET\.NUM_CLASSES=80 does not match the 1 category"):  # fmt: skip
        check_class_count(retina, "demo_trees_train", records)
    rpn = build_config(str(DEMO_CONFIG), ["MODEL.META_ARCHITECTURE", "ProposalNetwork"])
    rpn.MODEL.ROI_HEADS.NUM_CLASSES = 5
    check_class_count(rpn, "demo_trees_train", records)  # class-agnostic: nothing to match


def test_the_class_count_of_a_dataset_without_metadata_is_checked_by_its_ids(demo_root):
    name = "hostile_no_metadata"
    records = [
        {"file_name": "x.jpg", "image_id": 1, "width": 8, "height": 8,
         "annotations": [{"bbox": [0, 0, 4, 4], "bbox_mode": 1, "category_id": 2}]},
    ]  # fmt: skip
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: records)
    cfg = build_config(str(DEMO_CONFIG), ["MODEL.ROI_HEADS.NUM_CLASSES", "2"])
    with pytest.raises(ConfigError, match=r"NUM_CLASSES=2 is too small for dataset 'hostile_no_metadata', whose annotations use category 2 \(counted from 0\); expected MODEL\.ROI_HEADS\.NUM_CLASSES >= 3"):  # fmt: skip
        check_class_count(cfg, name, records)


# -- image files ------------------------------------------------------------------------


IMAGE_CASES = {
    "a 16-bit PNG": (_sixteen_bit_png, "a.png", (64, 48), r"a 16-bit image \(PIL mode I;16\), which Detectron2 reads as a white image: .*a\.png"),
    "a float TIFF": (_float_tiff, "a.tiff", (64, 48), r"a 32-bit float image \(PIL mode F\), which Detectron2 reads as a white image"),
    "a decompression bomb": (lambda p: _png_header_only(p, 100000, 100000), "a.png", (100000, 100000), r"its header claims 10,000,000,000 pixels, more than PIL's limit of 178,956,970 \(a decompression bomb\?\): .*a\.png"),
    "an EXIF-rotated photo annotated as stored": (lambda p: _photo(p, 64, 48, 6), "a.jpg", (64, 48), r"size 48x64 \(EXIF-rotated from the stored 64x48\) where the annotations say 64x48"),
    "a width given as text": (_photo, "a.jpg", ("64", 48), r"width='64' in the annotations is a str, not a number"),
    "not an image": (lambda p: p.write_text("hello"), "a.jpg", (64, 48), r"unreadable \(UnidentifiedImageError\): .*a\.jpg"),
    "no file": (lambda p: None, "a.jpg", (64, 48), r"missing: .*a\.jpg"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(IMAGE_CASES))
def test_an_image_detectron2_would_misread_is_named(tmp_path, case):
    make, file_name, (width, height), pattern = IMAGE_CASES[case]
    make(tmp_path / file_name)
    problem = header_problem(tmp_path / file_name, width, height)
    assert problem and re.search(pattern, problem), problem
    record = {"file_name": str(tmp_path / file_name), "width": width, "height": height}
    with pytest.raises(DataError, match=r"1 of 1 images cannot be used"):
        check_image_files([record], "hostile")


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_an_exif_rotated_photo_is_checked_at_the_size_detectron2_reads(tmp_path, orientation):
    path = _photo(tmp_path / "turned.jpg", 64, 48, orientation)
    height, width = read_image(str(path), format="BGR").shape[:2]  # Detectron2's own reading
    assert header_problem(path, width, height) is None
    assert (width, height) == ((48, 64) if orientation in (6, 8) else (64, 48))
    # ... and Detectron2's mapper agrees: no SizeMismatchError, so no skip as "corrupt".
    cfg = build_config(str(DEMO_CONFIG))
    record = {"file_name": str(path), "image_id": 1, "width": width, "height": height,
              "annotations": [{"bbox": [2.0, 2.0, 20.0, 20.0], "bbox_mode": 1, "category_id": 0}]}  # fmt: skip
    mapped = DatasetMapper(cfg, is_train=False)(record)
    assert mapped["image"].shape[0] == 3


def test_the_predictor_s_image_reading_names_the_file(tmp_path):
    ok = _photo(tmp_path / "ok.jpg", 64, 48, 6)
    assert np.array_equal(read_image_checked(ok, "BGR"), read_image(str(ok), format="BGR"))
    for make, name, pattern in [
        (lambda p: _png_header_only(p, 100000, 100000), "bomb.png", r"bomb\.png: its header claims 10,000,000,000 pixels"),
        (_sixteen_bit_png, "deep.png", r"deep\.png is a 16-bit image \(PIL mode I;16\), which Detectron2 reads as a white image; expected an 8-bit image"),
        (lambda p: p.write_bytes(b"GIF89a"), "cut.gif", r"cut\.gif cannot be read as an image"),
    ]:  # fmt: skip
        make(tmp_path / name)
        with pytest.raises(DataError, match=pattern):
            read_image_checked(tmp_path / name, "BGR")


def test_the_demo_predictor_skips_a_16_bit_image_and_names_it(tmp_path):
    cfg = build_config(str(DEMO_CONFIG), [*TINY_DEMO_OPTS, "MODEL.RESNETS.NORM", "BN"])
    model = build_model(cfg)  # a real, tiny, untrained detector: only the reading is tested
    SafeDetectionCheckpointer(model, save_dir=str(tmp_path)).save("tiny")
    cfg.MODEL.WEIGHTS = str(tmp_path / "tiny.pth")
    ok = _photo(tmp_path / "ok.jpg", 64, 48)
    deep = _sixteen_bit_png(tmp_path / "deep.png")
    predictions = predict_images(cfg, [ok, deep], tmp_path / "out", score_threshold=0.5)
    assert predictions.predicted == 1  # Detectron2 alone would predict on a white image
    assert [p.name for p, _ in predictions.skipped] == ["deep.png"]
    assert "a 16-bit image (PIL mode I;16)" in predictions.skipped[0][1]


def test_pretraining_skips_a_bomb_and_a_16_bit_image_in_training_and_names_them_in_evaluation(
    tmp_path, caplog
):
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        _photo(tmp_path / label / "fine.jpg")
    _png_header_only(tmp_path / "a" / "bomb.png", 100000, 100000)
    _sixteen_bit_png(tmp_path / "b" / "deep.png")
    split = _ImageFolderSplit(tmp_path)
    index = {Path(p).name: i for i, (p, _) in enumerate(split.samples)}
    train = AugmentedDataset(split, lambda image: np.asarray(image), seed=0)
    with caplog.at_level(logging.WARNING, logger="resnext_det.reproduction.pretrain.data"):
        image, _ = train[index["bomb.png"]]
        image, _ = train[index["deep.png"]]
    assert image.dtype == np.uint8 and image.shape[2] == 3
    assert "bomb.png: its header claims 10,000,000,000 pixels" in caplog.text
    assert (
        "deep.png: a 16-bit image (PIL mode I;16), which would be read as a white image"
        in caplog.text
    )
    evaluation = AugmentedDataset(split, lambda image: image, seed=0, skip_unreadable=False)
    with pytest.raises(DataError, match=r"unreadable image .*deep\.png: a 16-bit image"):
        evaluation[index["deep.png"]]


def test_pretraining_refuses_a_folder_it_would_read_twice(tmp_path):
    """torchvision's ImageFolder follows links: a loop reads 12 images as 492 samples."""
    make_image_folder(tmp_path, train=4, val=2, size=32)
    train = tmp_path / "train"
    (train / "florida" / "loop").symlink_to("..")  # back to train/
    with pytest.raises(DataError, match=r"train/florida/loop leads to .*train, a folder the split reads already; expected each folder once"):  # fmt: skip
        _ImageFolderSplit(train)
    (train / "florida" / "loop").unlink()
    (train / "portrait").rename(tmp_path / "elsewhere")
    (train / "portrait").symlink_to(tmp_path / "elsewhere")  # a class kept elsewhere: fine
    split = _ImageFolderSplit(train)
    assert sorted(Counter(split.targets).values()) == [4, 4, 4]


# -- Appendix B: stages made from other data ------------------------------------------------


def _appendix_b_data(root: Path, box_width: float) -> None:
    """Register ``hostile_b_train`` and ``hostile_b_val`` to COCO jsons under ``root``."""
    for split in ("train", "val"):
        data = _coco(root / split)
        for annotation in data["annotations"]:
            annotation["bbox"][2] = box_width
        (root / f"{split}.json").write_text(json.dumps(data))
        _register(f"hostile_b_{split}", root / f"{split}.json", root / split)


def test_appendix_b_does_not_reuse_stages_made_from_other_data(tmp_path):
    """Rerun on another data root with the same config, every finished stage was skipped
    and the old table printed again: the stage records held the config only."""
    rpn, fast_rcnn = CONFIGS / "demo" / "appendix_b_rpn.yaml", CONFIGS / "demo" / "appendix_b_fast_rcnn.yaml"  # fmt: skip
    opts = ["DATASETS.TRAIN", "('hostile_b_train',)", "DATASETS.TEST", "('hostile_b_val',)"]
    _appendix_b_data(tmp_path / "first", box_width=20.0)
    first = AppendixB(str(rpn), str(fast_rcnn), opts, str(tmp_path / "out"))
    for stage in STAGES:  # finished, as far as the records go: no training needed to test them
        first._start(stage)
        first._mark_done(stage, {})
    assert set(first.plan().values()) == {"skip"}
    shutil.copytree(tmp_path / "first", tmp_path / "moved")  # the same data elsewhere: reused
    _appendix_b_data(tmp_path / "moved", box_width=20.0)
    assert set(AppendixB(str(rpn), str(fast_rcnn), opts, str(tmp_path / "out")).plan().values()) == {"skip"}  # fmt: skip
    _appendix_b_data(tmp_path / "other", box_width=24.0)  # other boxes, same config
    other = AppendixB(str(rpn), str(fast_rcnn), opts, str(tmp_path / "out"))
    with pytest.raises(ConfigError, match=r"stage 'rpn' .*\(finished\) was made with another config or input than this run's: the data of 'hostile_b_train' differ from those it was made from"):  # fmt: skip
        other.plan()
    other.rerun_changed_stages = True
    assert set(other.plan().values()) == {"rerun"}
    for split in ("train", "val"):
        DatasetCatalog.remove(f"hostile_b_{split}")
        MetadataCatalog.remove(f"hostile_b_{split}")


# -- export: sample images ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """The tiny demo detector's real checkpoint."""
    folder = tmp_path_factory.mktemp("weights")
    model = build_model(build_config(str(DEMO_CONFIG), TINY_DEMO_OPTS))
    SafeDetectionCheckpointer(model, save_dir=str(folder)).save("model_final")
    return folder / "model_final.pth"


def _export(weights, out, *args, env=None):
    return run_cli(
        "tools/export_model.py", "--config-file", DEMO_CONFIG, *args, "--output", out,
        *TINY_DEMO_OPTS, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "MODEL.WEIGHTS", weights,
        env=env,
    )  # fmt: skip


def test_export_names_a_sample_image_it_cannot_read_and_missing_test_data(tiny_weights, tmp_path):
    (tmp_path / "notes.png").write_text("not an image\n")
    _png_header_only(tmp_path / "bomb.png", 100000, 100000)
    for name, pattern in [
        ("notes.png", r"notes\.png cannot be read as an image \(UnidentifiedImageError"),
        ("bomb.png", r"bomb\.png: its header claims 10,000,000,000 pixels"),
    ]:
        run = _export(tiny_weights, tmp_path / "out", "--sample-image", tmp_path / name)
        assert_one_line_error(run, pattern)
    # No --sample-image: the first images of DATASETS.TEST[0], whose data is not there.
    run = _export(tiny_weights, tmp_path / "out", env={"DETECTRON2_DATASETS": tmp_path / "none"})
    assert_one_line_error(run, r"dataset 'demo_trees_val': .*instances_val\.json does not exist")
    assert not (tmp_path / "out" / "model.ts").exists()


def test_onnx_export_runs_on_images_of_other_sizes(tiny_weights, tmp_path):
    """The graph takes any image size (it was traced with the first image's, then refused
    the others in onnxruntime); each size gives the eager model's detections."""
    wide, tall = _photo(tmp_path / "wide.png", 128, 96), _photo(tmp_path / "tall.png", 80, 128)
    run = _export(tiny_weights, tmp_path / "out", "--format", "onnx", "--sample-image", wide, tall)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    for index in (0, 1):
        count = re.search(rf"sample {index}: (\d+) eager / (\d+) exported detections", run.stdout)
        assert count and count[1] == count[2] and int(count[1]) > 0, run.stdout
    assert "same detections as the eager model" in run.stdout


# -- every training image unusable -------------------------------------------------------


def _truncated_pngs(folder: Path, count: int) -> list[dict]:
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(count):
        path = _photo(folder / f"cut_{i}.png", 64, 48)
        path.write_bytes(path.read_bytes()[:200])  # the header survives, the data does not
        records.append(
            {"file_name": str(path), "image_id": i, "width": 64, "height": 48,
             "annotations": [{"bbox": [2.0, 2.0, 20.0, 20.0], "bbox_mode": 1, "category_id": 0}]}
        )  # fmt: skip
    return records


def test_every_training_image_skipped_ends_in_one_line(tmp_path, caplog):
    records = _truncated_pngs(tmp_path, 5)
    check_image_files(records, "cut")  # the headers are fine: only decoding finds it
    cfg = build_config(str(DEMO_CONFIG), [*TINY_DEMO_OPTS])
    mapper = SkippingDatasetMapper(cfg, is_train=True)
    mapper.num_images = len(records)
    loader = build_detection_train_loader(cfg, dataset=records, mapper=mapper)
    caplog.set_level(logging.ERROR)
    with pytest.raises(DataError, match=r"all 5 training images failed to decode and were skipped \(e\.g\. .*cut_\d\.png"):  # fmt: skip
        next(iter(loader))


class _Failing:
    """A dataset whose every item is a user error: as a corrupt image in evaluation."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        raise DataError(f"image {index}.png cannot be decoded; expected a readable image")


def test_a_user_error_from_a_loader_worker_is_reported_as_its_own_line(capsys):
    with pytest.raises(DataError) as raised:
        next(iter(DataLoader(_Failing(), num_workers=1)))
    assert "Traceback" in str(raised.value)  # what PyTorch folds into the message
    report(raised.value)
    assert (
        capsys.readouterr().err
        == "error: image 0.png cannot be decoded; expected a readable image\n"
    )


# -- the minival id list ---------------------------------------------------------------


def _coco_2014_ids(root: Path, ids_text: str) -> Path:
    ann = root / "coco" / "annotations"
    ann.mkdir(parents=True)
    for folder, json_name, ids in (
        ("train2014", "instances_train2014.json", [1, 2]),
        ("val2014", "instances_val2014.json", [10, 11, 12, 13]),
    ):
        data = _coco(root / "coco" / folder, count=0)
        for i in ids:
            _photo(root / "coco" / folder / f"{i}.jpg")
            data["images"].append({"id": i, "file_name": f"{i}.jpg", "width": 64, "height": 48})
            data["annotations"].append(
                {"id": 10 * i, "image_id": i, "category_id": 1, "bbox": [4.0, 4.0, 9.0, 9.0]}
            )
        (ann / json_name).write_text(json.dumps(data))
    (ann / "minival2014_ids.txt").write_text(ids_text)
    return ann


def _image_ids(path: Path) -> list:
    return [i["id"] for i in json.loads(path.read_text())["images"]]


@pytest.mark.parametrize(
    "text,pattern",
    [
        ("", r"minival2014_ids\.txt lists no image id; expected the minival image ids of val2014"),
        ("\n\n  \n", r"lists no image id"),
        (
            "11\neleven\n",
            r"minival2014_ids\.txt line 2 is 'eleven'; expected one integer image id per line",
        ),
    ],
)
def test_an_empty_or_malformed_minival_list_is_refused(tmp_path, text, pattern):
    ann = _coco_2014_ids(tmp_path, text)
    with pytest.raises(DataError, match=pattern):
        build_minival_jsons(tmp_path)
    assert not (ann / "instances_minival2014.json").exists()
    assert not (ann / "instances_valminusminival2014.json").exists()


def test_the_minival_jsons_are_rebuilt_when_their_inputs_change(tmp_path):
    ann = _coco_2014_ids(tmp_path, "11\n13\n")
    minival, rest = ann / "instances_minival2014.json", ann / "instances_valminusminival2014.json"
    assert build_minival_jsons(tmp_path) == [minival, rest]
    assert _image_ids(minival) == [11, 13] and _image_ids(rest) == [10, 12]
    assert build_minival_jsons(tmp_path) == []  # up to date: not rewritten
    (ann / "minival2014_ids.txt").write_text("10\n")  # the list changed
    assert build_minival_jsons(tmp_path) == [minival, rest]
    assert _image_ids(minival) == [10] and _image_ids(rest) == [11, 12, 13]
    val = json.loads((ann / "instances_val2014.json").read_text())
    val["images"] = val["images"][:3]  # the val json changed: image 13 is gone
    val["annotations"] = [a for a in val["annotations"] if a["image_id"] != 13]
    (ann / "instances_val2014.json").write_text(json.dumps(val))
    build_minival_jsons(tmp_path)
    assert _image_ids(rest) == [11, 12]
    assert check_coco(tmp_path, expect_full=False) == []


def test_minival_jsons_it_did_not_build_are_kept_or_refused_never_overwritten(tmp_path):
    ann = _coco_2014_ids(tmp_path, "11\n13\n")
    minival, rest = ann / "instances_minival2014.json", ann / "instances_valminusminival2014.json"
    build_minival_jsons(tmp_path)
    for path in (minival, rest):  # as published: no record of what they were built from
        data = json.loads(path.read_text())
        del data["built_from"]
        path.write_text(json.dumps(data))
    assert build_minival_jsons(tmp_path) == []  # they agree with the list: kept
    (ann / "minival2014_ids.txt").write_text("11\n12\n")
    before = minival.read_bytes()
    with pytest.raises(DataError, match=r"instances_minival2014\.json was not built from minival2014_ids\.txt and its image list differs in 2 of 2 images .*move instances_minival2014\.json away"):  # fmt: skip
        build_minival_jsons(tmp_path)
    assert minival.read_bytes() == before


# -- a few real tool runs -----------------------------------------------------------------


def test_train_net_refuses_one_class_too_many_before_training(demo_root, tmp_path):
    run = run_cli(
        "tools/train_net.py", "--config-file", DEMO_CONFIG, *TINY_DEMO_OPTS,
        "MODEL.ROI_HEADS.NUM_CLASSES", "2", "OUTPUT_DIR", tmp_path / "out",
        env={"DETECTRON2_DATASETS": str(demo_root)},
    )  # fmt: skip
    assert_one_line_error(
        run,
        r"MODEL\.ROI_HEADS\.NUM_CLASSES=2 does not match the 1 category of dataset 'demo_trees_train'",
    )
    assert not (tmp_path / "out" / "last_checkpoint").exists()


def test_train_net_refuses_a_json_with_a_repeated_image_id(demo_root, tmp_path):
    data = _coco(tmp_path / "images", count=4)
    _duplicate_image_id(data)
    (tmp_path / "train.json").write_text(json.dumps(data))
    run = run_cli(
        "tools/train_net.py", "--config-file", DEMO_CONFIG,
        "--coco-dataset", "mine", tmp_path / "train.json", tmp_path / "images", *TINY_DEMO_OPTS,
        "DATASETS.TRAIN", "('mine',)", "DATASETS.TEST", "()", "OUTPUT_DIR", tmp_path / "out",
        env={"DETECTRON2_DATASETS": str(demo_root)},
    )  # fmt: skip
    assert_one_line_error(run, r"dataset 'mine': .*train\.json: image id 1 is listed 2 times")


def _train_net_on(demo_root, tmp_path, datasets, *opts):
    """train_net on COCO jsons of our own: ``datasets`` maps a name to its json content."""
    registered = []
    for name, data in datasets.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
        registered += ["--coco-dataset", name, tmp_path / f"{name}.json", tmp_path / "images"]
    return run_cli(
        "tools/train_net.py", "--config-file", DEMO_CONFIG, *registered, *TINY_DEMO_OPTS,
        *opts, "OUTPUT_DIR", tmp_path / "out", env={"DETECTRON2_DATASETS": str(demo_root)},
    )  # fmt: skip


def test_datasets_of_one_run_with_other_classes_are_refused_naming_both(demo_root, tmp_path):
    """Two training sets of other classes would train as one class (Detectron2's loader
    refuses them; ours must too), and a test set listing the same classes under other ids
    would be scored with its classes swapped."""
    trees, bushes = _coco(tmp_path / "images"), _coco(tmp_path / "images", categories=("bush",))
    run = _train_net_on(
        demo_root, tmp_path, {"trees": trees, "bushes": bushes},
        "DATASETS.TRAIN", "('trees', 'bushes')", "DATASETS.TEST", "()",
    )  # fmt: skip
    assert_one_line_error(
        run,
        r"dataset 'bushes' has the classes \['bush'\] where dataset 'trees' has \['tree'\] \(in the order of their category ids\); expected the same classes in the same order in every dataset of a run",
    )
    both = _coco(tmp_path / "images", categories=("tree", "bush"))
    swapped = json.loads(json.dumps(both))
    swapped["categories"] = [{"id": 1, "name": "bush"}, {"id": 2, "name": "tree"}]
    for annotation in swapped["annotations"]:
        annotation["category_id"] = 3 - annotation["category_id"]  # the same boxes, renumbered
    run = _train_net_on(
        demo_root, tmp_path, {"both": both, "swapped": swapped},
        "DATASETS.TRAIN", "('both',)", "DATASETS.TEST", "('swapped',)", "MODEL.ROI_HEADS.NUM_CLASSES", "2",
    )  # fmt: skip
    assert_one_line_error(
        run,
        r"dataset 'swapped' has the classes \['bush', 'tree'\] where dataset 'both' has \['tree', 'bush'\]",
    )
    assert not (tmp_path / "out" / "last_checkpoint").exists()


def test_prepare_coco_refuses_an_empty_minival_list(tmp_path):
    _coco_2014_ids(tmp_path, "")
    run = run_cli("datasets/prepare_coco.py", "--root", tmp_path, "--allow-subset")
    assert_one_line_error(run, r"minival2014_ids\.txt lists no image id")


@pytest.mark.parametrize(
    "change,pattern",
    [
        (lambda path: path.write_text('{"images": ['), r"instances_val2014\.json is not valid json \(Expecting value"),
        (lambda path: _edit_json(path, lambda d: d["images"][0].pop("id")), r"instances_val2014\.json: images\[0\] lacks 'id'"),
        (lambda path: _edit_json(path, lambda d: d["annotations"][0].pop("id")), r"instances_val2014\.json: annotations\[0\] lacks 'id'"),
    ],
    ids=["broken json", "an image without id", "an annotation without id"],
)  # fmt: skip
def test_prepare_coco_names_a_val_json_it_cannot_split(tmp_path, change, pattern):
    ann = _coco_2014_ids(tmp_path, "11\n")
    change(ann / "instances_val2014.json")
    run = run_cli("datasets/prepare_coco.py", "--root", tmp_path, "--allow-subset")
    assert_one_line_error(run, pattern)
    assert not (ann / "instances_minival2014.json").exists()  # nothing built from it


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.fixture(autouse=True)
def _quiet_sanitize_warnings(caplog):
    caplog.set_level("ERROR", logger="resnext_det.reproduction.data.sanitize")


def test_training_drops_images_with_too_few_keypoints_as_detectron2_s_loader(demo_root):
    """Detectron2's get_detection_dataset_dicts filters them (MIN_KEYPOINTS_PER_IMAGE);
    the loader that replaced it must too."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from resnext_det.reproduction.engine import build_config
    from resnext_det.reproduction.engine.trainer import load_dataset_dicts

    def records():
        base = {"height": 400, "width": 400, "file_name": "x.png"}
        box = {"bbox": [10, 10, 50, 50], "bbox_mode": 0, "category_id": 0}
        visible = [20, 20, 2] * 17
        hidden = [0, 0, 0] * 17
        return [
            {**base, "image_id": 1, "annotations": [{**box, "keypoints": visible}]},
            {**base, "image_id": 2, "annotations": [{**box, "keypoints": hidden}]},
        ]

    DatasetCatalog.register("keypoint_faults_train", records)
    MetadataCatalog.get("keypoint_faults_train").thing_classes = ["person"]
    try:
        cfg = build_config(str(DEMO_CONFIG), ["MODEL.KEYPOINT_ON", "True"])
        kept = load_dataset_dicts(cfg, ["keypoint_faults_train"], is_train=True)
        assert [r["image_id"] for r in kept] == [1]
        assert len(load_dataset_dicts(cfg, ["keypoint_faults_train"], is_train=False)) == 2
    finally:
        DatasetCatalog.remove("keypoint_faults_train")
        MetadataCatalog.remove("keypoint_faults_train")
