"""Input pipelines of classification pretraining: ImageNet folders and CIFAR batches.

Two properties make runs reproducible and comparable:

- **Batches do not depend on the number of processes.** Each epoch has one seeded order;
  global batch ``k`` is its ``k``-th slice, and each process takes its contiguous share of
  that slice. One process with batch 256 and eight with 32 each see the same batches.
- **Augmentation depends only on (seed, epoch, image).** Every random crop and flip draws
  from a generator seeded by those three numbers, so a resumed run, or a run on another
  number of processes or data workers, augments each image exactly as the original would.
"""

import logging
import os
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler
from torchvision import datasets as tv_datasets
from torchvision import transforms as T

from ...utils.errors import ConfigError, DataError, MissingFileError
from ...utils.safe_pickle import UnsafePickleError, load_pickle_safely
from ..data.images import DecompressionBomb, bomb_text, unsupported_mode
from ..training.batch import check_batch_split

__all__ = [
    "CIFAR_FORMATS",
    "AugmentedDataset",
    "CifarDataset",
    "ClassificationData",
    "EvalSampler",
    "TrainSampler",
    "build_classification_data",
    "sample_seed",
]

logger = logging.getLogger(__name__)

SampleKey = tuple[int, int]  # (epoch, index)


@dataclass(frozen=True)
class _CifarFormat:
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    names_key: str
    labels_key: str


# The python-pickle versions from https://www.cs.toronto.edu/~kriz/cifar.html, unpacked.
CIFAR_FORMATS = {
    "cifar10": _CifarFormat(
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        "batches.meta",
        "label_names",
        "labels",
    ),
    "cifar100": _CifarFormat(
        "cifar-100-python", ("train",), ("test",), "meta", "fine_label_names", "fine_labels"
    ),
}


_ORDER, _AUGMENTATION = 0, 1  # what a seed is for, so that the two never share one


def sample_seed(seed: int, epoch: int, index: int, purpose: int = _AUGMENTATION) -> int:
    """A 63-bit seed that depends on the run's seed, the epoch and the image index only."""
    entropy = [seed, epoch, purpose, index]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]) >> 1


class CifarDataset(Dataset):
    """One split of CIFAR-10 or CIFAR-100 from its python-pickle batches.

    The batches are pickles; they are read with the restricted unpickler that weight
    files use, so a crafted batch cannot run code.

    Args:
        root: the folder holding ``cifar-10-batches-py/`` or ``cifar-100-python/``.
        name: 'cifar10' or 'cifar100'.
        train: the 50k training images, else the 10k test images.
    """

    def __init__(self, root: os.PathLike, name: str, train: bool):
        fmt = CIFAR_FORMATS[name]
        folder = Path(root) / fmt.folder
        images, labels = [], []
        for file_name in fmt.train_files if train else fmt.test_files:
            batch = _read_cifar_pickle(folder / file_name)
            images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(int(label) for label in batch[fmt.labels_key])
        self.images = np.concatenate(images).transpose(0, 2, 3, 1)  # N, H, W, RGB
        self.targets = labels
        self.classes = [str(n) for n in _read_cifar_pickle(folder / fmt.meta_file)[fmt.names_key]]
        if len(self.images) != len(self.targets):
            raise DataError(
                f"{folder}: {len(self.images)} images but {len(self.targets)} labels; "
                "expected one label per image"
            )

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return Image.fromarray(self.images[index]), self.targets[index]


def _read_cifar_pickle(path: Path) -> dict:
    if not path.is_file():
        raise MissingFileError(f"{path} is missing; expected the CIFAR python-pickle batches")
    with open(path, "rb") as f:
        try:
            data = load_pickle_safely(f, encoding="latin1")
        except UnsafePickleError:
            raise
        except (EOFError, pickle.UnpicklingError, ValueError) as e:  # truncated, not a pickle
            raise DataError(f"{path} is not a readable CIFAR batch ({e})") from e
    if not isinstance(data, dict):
        raise DataError(f"{path} holds a {type(data).__name__}; expected a dict (a CIFAR batch)")
    return data


def _check_each_folder_once(root: Path) -> None:
    """Refuse a folder that ``root`` reaches twice: a link back up the tree (a loop) or to a
    folder the split holds already. torchvision's ImageFolder follows links and would read
    its images again, under the class of the link (a loop: until the path is too long), with
    no word. A link to a folder kept elsewhere is read as any other folder.

    Raises:
        DataError: naming the link and the folder it leads to.
    """
    first_seen: dict[str, str] = {}
    for folder, _, _ in os.walk(root, followlinks=True):  # as ImageFolder walks
        real = os.path.realpath(folder)
        if real in first_seen:
            raise DataError(
                f"{folder} leads to {first_seen[real]}, a folder the split reads already; "
                "expected each folder once (torchvision follows links and would read its "
                "images again)"
            )
        first_seen[real] = folder


class _ImageFolderSplit(Dataset):
    """``<root>/<class>/*``, with class indices from ``classes`` (default: its own folders)."""

    def __init__(self, root: Path, classes: Optional[Sequence[str]] = None):
        _check_each_folder_once(root)
        try:
            folder = tv_datasets.ImageFolder(str(root))
        except FileNotFoundError as e:  # no class folder, or a class folder without images
            raise DataError(f"{root}: {e}; expected <class>/<image> folders") from e
        self.classes = list(classes or folder.classes)
        index = {name: i for i, name in enumerate(self.classes)}
        unknown = sorted(set(folder.classes) - set(index))
        if unknown:
            raise DataError(
                f"{root} has class folders the training split lacks: {unknown[:5]}; expected "
                "its classes to be among the training classes"
            )
        self.samples = [(path, index[folder.classes[t]]) for path, t in folder.samples]
        self.targets = [t for _, t in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        path, target = self.samples[index]
        try:
            with Image.open(path) as image:
                kind = unsupported_mode(image.mode)
                if kind:  # converting would clip it to a white image
                    raise OSError(f"{kind}, which would be read as a white image")
                return image.convert("RGB"), target
        except DecompressionBomb as e:  # no OSError: it would end the run with a traceback
            raise OSError(f"{path}: {bomb_text(e)}") from e
        except OSError as e:  # PIL's UnidentifiedImageError and truncated files
            raise OSError(f"{path}: {e}") from e


class AugmentedDataset(Dataset):
    """A dataset whose samples are transformed with randomness fixed by (seed, epoch, index).

    Indexed by ``(epoch, index)`` keys (see :class:`TrainSampler`) or plain indices (epoch 0).
    In training (``skip_unreadable``) an image that cannot be decoded (or only wrongly: a
    16-bit image, a decompression bomb) is replaced by the next readable one, with a
    warning naming its file, so one corrupt file does not end a run hours in; in
    evaluation it is an error naming the file (a score over other images would not be the
    score asked for).
    """

    def __init__(
        self,
        dataset: Dataset,
        transform: Callable,
        seed: int,
        skip_unreadable: bool = True,
        max_skips: int = 16,
    ):
        self.dataset = dataset
        self.transform = transform
        self.seed = seed
        self.skip_unreadable = skip_unreadable
        self.max_skips = max_skips

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Any) -> tuple[torch.Tensor, int]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        image, target = self._load(index)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(self.seed, epoch, index))
            return self.transform(image), target

    def _load(self, index: int) -> tuple[Image.Image, int]:
        for skip in range(self.max_skips):
            candidate = (index + skip) % len(self.dataset)
            try:
                return self.dataset[candidate]
            except OSError as e:  # the dataset names the file
                if not self.skip_unreadable:
                    raise DataError(f"unreadable image {e}; expected every image readable") from e
                logger.warning(f"skipping an unreadable image: {e}")
        raise DataError(
            f"{self.max_skips} unreadable images in a row from index {index}; expected "
            "readable image files (datasets/prepare_imagenet.py checks a folder)"
        )


class TrainSampler(Sampler[SampleKey]):
    """This process's share of every global batch of an epoch, as ``(epoch, index)`` keys.

    The epoch's order is a permutation seeded by ``(seed, epoch)``; global batch ``k`` is
    ``order[k*B:(k+1)*B]`` for ``B = global_batch``, and process ``r`` of ``w`` takes the
    ``r``-th of its ``w`` contiguous pieces. An incomplete last batch is dropped.

    Args:
        size: number of images.
        global_batch: images per iteration over all processes.
        rank: this process.
        world_size: number of processes.
        seed: the run's seed.
    """

    def __init__(self, size: int, global_batch: int, rank: int, world_size: int, seed: int):
        check_batch_split(global_batch, 0, world_size)
        if size < global_batch:
            raise DataError(
                f"the training split has {size} images, fewer than one global batch of "
                f"{global_batch}; expected at least {global_batch} images"
            )
        self.size, self.global_batch, self.seed = size, global_batch, seed
        self.local_batch = global_batch // world_size
        self.offset = rank * self.local_batch
        self.iters_per_epoch = size // global_batch
        self.set_epoch(0)

    def set_epoch(self, epoch: int, start_iter: int = 0) -> None:
        """Iterate over ``epoch``, beginning at its iteration ``start_iter`` (for a resume)."""
        self.epoch, self.start_iter = epoch, start_iter

    def __len__(self) -> int:
        return (self.iters_per_epoch - self.start_iter) * self.local_batch

    def __iter__(self) -> Iterator[SampleKey]:
        generator = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, 0, _ORDER))
        order = torch.randperm(self.size, generator=generator).tolist()
        for iteration in range(self.start_iter, self.iters_per_epoch):
            begin = iteration * self.global_batch + self.offset
            for index in order[begin : begin + self.local_batch]:
                yield self.epoch, index


class EvalSampler(Sampler[int]):
    """Every ``world_size``-th image from ``rank`` on: each image once over all processes."""

    def __init__(self, size: int, rank: int, world_size: int):
        self.indices = list(range(rank, size, world_size))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)


@dataclass
class ClassificationData:
    """The training and evaluation splits and what is known of their classes.

    Attributes:
        train: training images (un-transformed), targets in ``0 .. len(classes) - 1``.
        val: evaluation images with targets in the same index space.
        classes: the training classes, in index order.
        val_classes: indices of the classes the val split holds. When fewer than
            ``classes``, the model is also scored as a ``len(val_classes)``-way classifier
            (the paper's ImageNet-5K models scored on the 1K val set, Table 6).
        train_transform: the training augmentation.
        test_transform: the evaluation preprocessing.
    """

    train: Dataset
    val: Dataset
    classes: list[str]
    val_classes: list[int]
    train_transform: Callable
    test_transform: Callable


def _normalize(cfg) -> T.Normalize:
    return T.Normalize(mean=list(cfg.INPUT.PIXEL_MEAN), std=list(cfg.INPUT.PIXEL_STD))


def _imagenet_transforms(cfg) -> tuple[Callable, Callable]:
    train = T.Compose(
        [
            T.RandomResizedCrop(cfg.INPUT.TRAIN_CROP, scale=tuple(cfg.INPUT.TRAIN_SCALE)),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            _normalize(cfg),
        ]
    )
    test = T.Compose(
        [
            T.Resize(cfg.INPUT.TEST_RESIZE),
            T.CenterCrop(cfg.INPUT.TEST_CROP),
            T.ToTensor(),
            _normalize(cfg),
        ]
    )
    return train, test


def _cifar_transforms(cfg) -> tuple[Callable, Callable]:
    train = T.Compose(
        [
            T.RandomCrop(32, padding=cfg.INPUT.PADDING, fill=0),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            _normalize(cfg),
        ]
    )
    return train, T.Compose([T.ToTensor(), _normalize(cfg)])


def build_classification_data(cfg) -> ClassificationData:
    """The splits that ``cfg.DATA`` names, with the transforms that ``cfg.INPUT`` sets.

    Raises:
        FileNotFoundError: a split's folder or file is missing.
        ValueError: the data does not have the expected layout.
    """
    root, fmt = Path(cfg.DATA.ROOT), cfg.DATA.FORMAT
    if fmt in CIFAR_FORMATS:
        train = CifarDataset(root, fmt, train=True)
        val = CifarDataset(root, fmt, train=False)
        classes = train.classes
        train_transform, test_transform = _cifar_transforms(cfg)
    elif fmt == "imagefolder":
        for split in ("train", "val"):
            if not (root / split).is_dir():
                raise MissingFileError(
                    f"DATA.ROOT={str(root)!r} has no {split}/ folder; expected "
                    "train/<class>/* and val/<class>/* (datasets/README.md)"
                )
        train = _ImageFolderSplit(root / "train")
        classes = train.classes
        val = _ImageFolderSplit(root / "val", classes)
        train_transform, test_transform = _imagenet_transforms(cfg)
    else:
        allowed = ", ".join(["imagefolder", *CIFAR_FORMATS])
        raise ConfigError(f"DATA.FORMAT={fmt!r} is not supported; expected one of {allowed}")
    val_classes = sorted(set(val.targets))
    return ClassificationData(train, val, classes, val_classes, train_transform, test_transform)
