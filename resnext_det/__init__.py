"""resnext-det: the ResNeXt family (Xie et al., CVPR 2017) as a Detectron2 plugin.

Importing the package registers nothing; call :func:`register_resnext_backbone` and
:func:`add_resnext_config` where you build your Detectron2 config.
"""

import warnings

# Detectron2 scripts a few functions when it is imported, and torch >= 2.10 warns about it
# twice on every start of every tool; the warning is about Detectron2's code, not the user's.
warnings.filterwarnings(
    "ignore", message="`torch.jit.script` is deprecated", category=FutureWarning
)

from .config import add_resnext_config  # noqa: E402
from .registration import register_resnext_backbone  # noqa: E402

__version__ = "0.1.0"

__all__ = ["__version__", "add_resnext_config", "register_resnext_backbone"]
