"""resnext-det: the ResNeXt family (Xie et al., CVPR 2017) as a Detectron2 plugin.

Importing the package registers nothing; call :func:`register_resnext_backbone` and
:func:`add_resnext_config` where you build your Detectron2 config.
"""

from .config import add_resnext_config
from .registration import register_resnext_backbone

__version__ = "0.1.0"

__all__ = ["__version__", "add_resnext_config", "register_resnext_backbone"]
