"""resnext-det: the ResNeXt family (Xie et al., CVPR 2017) as a Detectron2 plugin.

Importing the package registers nothing; call :func:`register_resnext_backbone` and
:func:`add_resnext_config` where you build your Detectron2 config.
"""

import warnings

# Two deprecations inside Detectron2's own code that torch reports on every run of every
# tool (it scripts functions on import; its anchor generator calls meshgrid without
# indexing): they concern Detectron2, not the user, and would bury our messages.
warnings.filterwarnings(
    "ignore", message="`torch.jit.script` is deprecated", category=FutureWarning
)
warnings.filterwarnings(
    "ignore", message="torch.meshgrid: in an upcoming release", category=UserWarning
)

from .config import add_resnext_config  # noqa: E402
from .registration import register_resnext_backbone  # noqa: E402

__version__ = "0.1.0"

__all__ = ["__version__", "add_resnext_config", "register_resnext_backbone"]
