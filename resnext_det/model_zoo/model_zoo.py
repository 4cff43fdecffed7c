"""Find and load the configs shipped inside the package."""

from pathlib import Path, PurePosixPath
from typing import Union

from detectron2.config import CfgNode, LazyConfig, get_cfg
from fvcore.common.config import CfgNode as PlainCfgNode
from omegaconf import DictConfig

from ..config import add_resnext_config, get_pretrain_cfg, merge_config
from ..utils.errors import MissingFileError

__all__ = ["CONFIGS_ROOT", "PRETRAINING_FOLDERS", "get_config", "get_config_file", "list_configs"]

CONFIGS_ROOT = Path(__file__).resolve().parent / "configs"
# Classification pretraining configs (tools/pretrain_imagenet.py), not detection ones.
PRETRAINING_FOLDERS = ("imagenet", "cifar")


def list_configs() -> list[str]:
    """The names of every shipped config (yaml and LazyConfig ``.py``), relative to the root."""
    if not CONFIGS_ROOT.is_dir():
        return []
    return sorted(
        path.relative_to(CONFIGS_ROOT).as_posix()
        for pattern in ("*.yaml", "*.py")
        for path in CONFIGS_ROOT.rglob(pattern)
    )


def get_config_file(name: str) -> str:
    """The path of a shipped config, e.g. ``get_config_file("faster_rcnn_X50_32x4d.yaml")``.

    Args:
        name: the config's path relative to ``configs/`` (``demo/...``, ``appendix_b/...``),
            as :func:`list_configs` gives it. Nothing outside the shipped tree is served.

    Raises:
        MissingFileError: no shipped config has that name (the message lists a few).
    """
    known = list_configs()
    if not known:
        raise MissingFileError(
            f"the package holds no configs at {CONFIGS_ROOT}; expected them installed with "
            "it (reinstall resnext-det: `pip install .` from its repository)"
        )
    # Only names from the list: an absolute path or a '..' (whose .py LazyConfig would run)
    # is not a shipped config, wherever it points.
    if str(name) not in known:
        raise MissingFileError(
            f"{name!r} is not a shipped config; expected one of {len(known)} such as "
            f"{', '.join(known[:4])} (resnext_det.model_zoo.list_configs() gives all)"
        )
    path = CONFIGS_ROOT / name
    if not path.resolve().is_relative_to(CONFIGS_ROOT.resolve()):  # a link out of the tree
        raise MissingFileError(f"{name!r} leads out of the shipped configs to {path.resolve()}")
    return str(path)


def get_config(name: str) -> Union[CfgNode, PlainCfgNode, DictConfig]:
    """A shipped config, loaded and ready to build or run.

    Returns:
        For a detection ``.yaml``: Detectron2's defaults with ``MODEL.RESNEXT`` added and the
        file merged (a yacs ``CfgNode``). For ``imagenet/`` and ``cifar/``: the pretraining
        config (:func:`~resnext_det.config.get_pretrain_cfg`) with the file merged. For
        ``.py``: the LazyConfig (``LazyConfig.load``).
    """
    path = get_config_file(name)
    if path.endswith(".py"):
        return LazyConfig.load(path)
    if PurePosixPath(name).parts[0] in PRETRAINING_FOLDERS:
        return merge_config(get_pretrain_cfg(), path)
    return merge_config(add_resnext_config(get_cfg()), path)
