"""resnext-det: the ResNeXt family (Xie et al., CVPR 2017) as a Detectron2 plugin.

Importing the package registers nothing and changes no global setting (warnings,
logging); call :func:`register_resnext_backbone` and :func:`add_resnext_config` where you
build your Detectron2 config. Both are imported on first use, so that ``resnext_det.utils``
stays light for data loaders and dataset scripts.
"""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "add_resnext_config", "register_resnext_backbone"]

if TYPE_CHECKING:
    from .config import add_resnext_config
    from .registration import register_resnext_backbone


def __getattr__(name: str) -> Any:
    if name == "add_resnext_config":
        from .config import add_resnext_config

        return add_resnext_config
    if name == "register_resnext_backbone":
        from .registration import register_resnext_backbone

        return register_resnext_backbone
    raise AttributeError(f"module 'resnext_det' has no attribute {name!r}")
