"""The shipped configs, from an installed package as from a checkout (Detectron2's idiom).

``configs/`` of the repository is the source; ``setup.py`` links it into the package as
``resnext_det/model_zoo/configs`` (a copy in a wheel), so that a project that installed
the plugin can load them::

    from resnext_det import model_zoo
    cfg = model_zoo.get_config("faster_rcnn_X50_32x4d.yaml")        # yacs CfgNode
    lazy = model_zoo.get_config("faster_rcnn_X50_32x4d_FPN.py")     # LazyConfig
"""

from .model_zoo import get_config, get_config_file, list_configs

__all__ = ["get_config", "get_config_file", "list_configs"]
