"""Small classification data sets cut from real photos that ship in installed packages."""

import pickle
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image

from resnext_det.reproduction.data.demo_trees import deepforest_data_dir

# One class per photo: aerial tree crowns of two sites, and a portrait.
PHOTOS = {
    "yellowstone": deepforest_data_dir() / "2019_YELL_2_528000_4978000_image_crop2.png",
    "florida": deepforest_data_dir() / "OSBS_029.png",
    "portrait": Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg",
}


def photo_crops(name: str, count: int, size: int, seed: int) -> list[Image.Image]:
    """``count`` random square crops of side ``size`` from one photo."""
    rng = np.random.default_rng(seed)
    with Image.open(PHOTOS[name]) as opened:
        photo = opened.convert("RGB")
    crops = []
    for _ in range(count):
        left = int(rng.integers(0, photo.width - size + 1))
        top = int(rng.integers(0, photo.height - size + 1))
        crops.append(photo.crop((left, top, left + size, top + size)))
    return crops


def make_image_folder(root: Path, train: int = 12, val: int = 4, size: int = 96) -> Path:
    """``root/train/<class>/*.jpg`` and ``root/val/<class>/*.jpg``, one class per photo."""
    for split, count, seed in (("train", train, 0), ("val", val, 1)):
        for label, name in enumerate(sorted(PHOTOS)):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i, crop in enumerate(photo_crops(name, count, size, seed * 100 + label)):
                crop.save(folder / f"{name}_{i:03d}.jpg", quality=95)
    return root


def make_cifar10(root: Path, train: int = 20, test: int = 6) -> Path:
    """The CIFAR-10 python-pickle layout (5 data batches, a test batch, the meta file),
    holding 32x32 crops of the photos; labels 0..2 follow ``sorted(PHOTOS)``."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def batch(count: int, seed: int) -> dict:
        images, labels = [], []
        for label, name in enumerate(sorted(PHOTOS)):
            for crop in photo_crops(name, count, 32, seed + label):
                images.append(np.asarray(crop).transpose(2, 0, 1).reshape(-1))
                labels.append(label)
        return {"batch_label": "synthetic", "labels": labels, "data": np.stack(images)}

    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch(train // 5, 10 * i), 2))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(test, 99), 2))
    names = sorted(PHOTOS) + [f"unused_{i}" for i in range(7)]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}, 2))
    return root
