"""resnext-det: the ResNeXt family (Xie et al., CVPR 2017) as a Detectron2 plugin.

Importing the package registers its backbones and RoI heads in Detectron2's registries,
as Detectron2 projects do; :func:`register_resnext_backbone` does the same and may be
called again. :func:`add_resnext_config` adds ``MODEL.RESNEXT`` to a Detectron2 config.
Importing changes no global setting beyond the registries (warnings and logging are the
tools' choice).
"""

import warnings

__version__ = "0.1.0"

__all__ = ["__version__", "add_resnext_config", "register_resnext_backbone"]

# Detectron2 scripts some of its functions when first imported, and torch calls
# torch.jit.script deprecated: a warning about Detectron2's code, not the user's.
with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message="`torch.jit.script` is deprecated", category=FutureWarning
    )
    from .config import add_resnext_config
    from .registration import register_resnext_backbone

register_resnext_backbone()
