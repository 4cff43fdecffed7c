"""A user's own COCO-format dataset, registered from the command line (``--coco-dataset``)."""

from collections.abc import Iterable
from pathlib import Path

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances

from ...utils.errors import ConfigError, MissingFileError

__all__ = ["register_coco_datasets"]


def register_coco_datasets(datasets: Iterable[tuple[str, str, str]]) -> list[str]:
    """Register each ``(name, json_file, image_dir)`` as Detectron2's ``register_coco_instances``.

    Safe to call again with the same values (each process of a launch registers for
    itself). The data itself is checked with every other dataset before a run starts.

    Returns:
        The names registered.

    Raises:
        MissingFileError: the json or the image folder does not exist.
        ConfigError: the name is taken by another dataset.
    """
    names = []
    for name, json_file, image_dir in datasets:
        if not Path(json_file).is_file():
            raise MissingFileError(
                f"--coco-dataset {name}: {json_file} does not exist; expected a COCO json file"
            )
        if not Path(image_dir).is_dir():
            raise MissingFileError(
                f"--coco-dataset {name}: {image_dir} is not a folder; expected the folder of "
                "the images the json names"
            )
        if name in DatasetCatalog.list():
            metadata = MetadataCatalog.get(name)
            same = (metadata.get("json_file"), metadata.get("image_root")) == (
                json_file,
                image_dir,
            )
            if not same:
                raise ConfigError(
                    f"--coco-dataset {name}: the name is taken by a registered dataset "
                    f"({metadata.get('json_file', 'not from a COCO json')}); expected a new name"
                )
        else:
            register_coco_instances(name, {}, json_file, image_dir)
        names.append(name)
    return names
