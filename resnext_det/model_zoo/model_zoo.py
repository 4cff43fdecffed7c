"""Find and load the configs shipped inside the package."""

from pathlib import Path
from typing import Union

from detectron2.config import CfgNode, LazyConfig, get_cfg
from omegaconf import DictConfig

from ..config import add_resnext_config, merge_config
from ..registration import register_resnext_backbone
from ..utils.errors import MissingFileError

__all__ = ["CONFIGS_ROOT", "get_config", "get_config_file", "list_configs"]

CONFIGS_ROOT = Path(__file__).resolve().parent / "configs"


def list_configs() -> list[str]:
    """The names of every shipped config (yaml and LazyConfig ``.py``), relative to the root."""
    if not CONFIGS_ROOT.is_dir():
        return []
    return sorted(
        str(path.relative_to(CONFIGS_ROOT))
        for pattern in ("*.yaml", "*.py")
        for path in CONFIGS_ROOT.rglob(pattern)
    )


def get_config_file(name: str) -> str:
    """The path of a shipped config, e.g. ``get_config_file("faster_rcnn_X50_32x4d.yaml")``.

    Args:
        name: the config's path relative to ``configs/`` (``demo/...``, ``appendix_b/...``).

    Raises:
        MissingFileError: no shipped config has that name (the message lists a few).
    """
    path = CONFIGS_ROOT / name
    if not path.is_file():
        known = list_configs()
        if not known:
            raise MissingFileError(
                f"the package holds no configs at {CONFIGS_ROOT}; expected them installed with "
                "it (reinstall resnext-det: `pip install .` from its repository)"
            )
        raise MissingFileError(
            f"{name!r} is not a shipped config; expected one of {len(known)} such as "
            f"{', '.join(known[:4])} (resnext_det.model_zoo.list_configs() gives all)"
        )
    return str(path)


def get_config(name: str) -> Union[CfgNode, DictConfig]:
    """A shipped config, loaded and ready to build, with the ResNeXt components registered.

    Returns:
        For ``.yaml``: Detectron2's defaults with ``MODEL.RESNEXT`` added and the file merged
        (a yacs ``CfgNode``). For ``.py``: the LazyConfig (``LazyConfig.load``).
    """
    path = get_config_file(name)
    register_resnext_backbone()
    if path.endswith(".py"):
        return LazyConfig.load(path)
    return merge_config(add_resnext_config(get_cfg()), path)
